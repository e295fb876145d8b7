//! Reading a file into a plan (the first phase): every row mapped,
//! validated and fingerprinted, in pieces on the pool; then the keys and
//! e-mails sorted and every duplicate rejected (SPEC §3 step 2).

use std::io::Read;

use crate::diff::decide::{
    fold_case, hash_key, same_key, Entry, Span, ENDED, INACTIVE, INVITE_LATER, VALID,
};
use crate::diff::Fingerprinter;
use crate::index::sort_index;
use crate::model::{Action, Code, ObjectKind};
use crate::profile::{Date, Layout, MappedRow, Profile};
use crate::reader::{ChunkOptions, Offset, Record};
use crate::snapshot::Snapshot;
use crate::store::{NoPrior, Prior};

use super::{FileError, Plan};

/// How far a long read has come, for progress displays.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    pub records: u64,
    pub bytes: u64,
}

/// Reads a whole snapshot through `profile` and plans it against an empty
/// previous state, with `today` for end dates (`muster check`).
pub fn check<R: Read>(profile: &Profile, input: R, today: Date) -> Result<Plan, FileError> {
    check_with_progress(profile, input, today, &mut |_| {})
}

/// [`check`], calling `progress` every 65,536 records.
pub fn check_with_progress<R: Read>(
    profile: &Profile,
    input: R,
    today: Date,
    progress: &mut dyn FnMut(Progress),
) -> Result<Plan, FileError> {
    let opts = ReadOptions {
        fingerprints: Fingerprints::Skip,
        ..ReadOptions::default()
    };
    let mut plan = read_with(profile, input, today, opts, progress)?;
    plan.against(profile, &NoPrior);
    Ok(plan)
}

/// [`read`] then [`Plan::against`] `prior`.
pub fn build<R: Read>(
    profile: &Profile,
    input: R,
    today: Date,
    prior: &dyn Prior,
    progress: &mut dyn FnMut(Progress),
) -> Result<Plan, FileError> {
    let mut plan = read(profile, input, today, None, progress)?;
    plan.against(profile, prior);
    Ok(plan)
}

/// What the list fields of a users file refer to, when the tenant has a
/// group or segment file: the groups and segments known after those files
/// were applied. `None`: names are taken as they are (created on demand).
#[derive(Clone, Copy, Default)]
pub struct ListRefs<'a> {
    pub groups: Option<&'a dyn Prior>,
    pub segments: Option<&'a dyn Prior>,
}

/// How [`read_with`] reads a file.
#[derive(Clone, Copy, Default)]
pub struct ReadOptions<'a> {
    /// The file size, when known: sizes the buffers once.
    pub size_hint: Option<u64>,
    /// What list fields refer to.
    pub refs: ListRefs<'a>,
    /// What stands for each row's fingerprint.
    pub fingerprints: Fingerprints,
    /// How the file is cut into pieces read in parallel.
    pub chunks: ChunkOptions,
    /// Read on this thread alone, in one pass (for callers that read
    /// several files at once: `muster diff`).
    pub serial: bool,
}

/// What a plan keeps as each row's fingerprint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fingerprints {
    /// The fingerprint of the normalised row ([`Fingerprinter::fingerprint`]):
    /// what the store keeps.
    #[default]
    Normalised,
    /// The hash of the record as read ([`Record::content_hash`]), for a plan
    /// compared with one read alike from a file of the same layout (`muster
    /// diff`): equal hashes mean equal rows, and rows whose hashes differ
    /// are settled by their fields.
    Record,
    /// None: the plan will only be compared with an empty prior (`muster
    /// check`), where they are never looked at.
    Skip,
}

/// [`read_with`] without list references.
pub fn read<R: Read>(
    profile: &Profile,
    input: R,
    today: Date,
    size_hint: Option<u64>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Plan, FileError> {
    let opts = ReadOptions {
        size_hint,
        ..ReadOptions::default()
    };
    read_with(profile, input, today, opts, progress)
}

/// The names in a user's list fields that `refs` does not know, as a
/// results message, or `None` when all resolve.
fn unknown_list_items(profile: &Profile, row: &MappedRow, refs: ListRefs<'_>) -> Option<String> {
    if refs.groups.is_none() && refs.segments.is_none() {
        return None;
    }
    let mut problems = Vec::new();
    for (slot, spec) in profile.slots.iter().enumerate() {
        let (known, what) = match spec.field {
            crate::profile::Field::Groups | crate::profile::Field::AdminGroups => {
                (refs.groups, "group")
            }
            crate::profile::Field::Segments => (refs.segments, "segment"),
            _ => continue,
        };
        let Some(known) = known else { continue };
        let missing: Vec<&str> = row.items(slot).filter(|i| known.get(i).is_none()).collect();
        if !missing.is_empty() {
            problems.push(format!(
                "{} {:?} match no {what}",
                spec.field,
                missing.join(", ")
            ));
        }
    }
    (!problems.is_empty()).then(|| format!("{}; applied without them", problems.join("; ")))
}

/// The first phase: reads a whole snapshot through `profile`, maps,
/// validates and fingerprints every row, and rejects duplicate keys and
/// e-mails. `size_hint` (the file size, when known) sizes the buffers once.
/// Call [`Plan::against`] before using the actions.
pub fn read_with<R: Read>(
    profile: &Profile,
    input: R,
    today: Date,
    opts: ReadOptions<'_>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Plan, FileError> {
    let mut snapshot = Snapshot::open(profile, input)?;
    let layout = snapshot.layout().clone();
    let fingerprinter = Fingerprinter::new(profile);
    let reading = RowReader {
        profile,
        layout: &layout,
        today,
        opts: &opts,
    };
    let mut part = Part::new(profile, opts.size_hint);
    let (plan, emails) = if opts.serial {
        let mut scratch = Scratch::new(&fingerprinter);
        while snapshot.read_record(&mut scratch.rec)? {
            reading.row(&mut scratch, &mut part);
            if part.plan.records.is_multiple_of(65_536) {
                progress(Progress {
                    records: part.plan.records,
                    bytes: snapshot.byte_offset(),
                });
            }
        }
        part.plan.bytes = snapshot.byte_offset();
        (part.plan, part.emails)
    } else {
        read_pieces(snapshot, &reading, &fingerprinter, part, progress)?
    };
    tracing::debug!(records = plan.records, bytes = plan.bytes, profile = %profile.name, "file read");
    let mut plan = plan;
    plan.today = today;
    Ok(settle(profile, plan, emails))
}

/// The end of reading a file: sorts its key and e-mail indexes (at once,
/// on the pool) and rejects the rows whose key or e-mail another row has.
fn settle(profile: &Profile, mut plan: Plan, mut emails: EmailIndex) -> Plan {
    let key_name = profile.slots[profile.key_slot].field.as_str();
    // The keys and the e-mails are sorted at once, on the pool.
    let mut keys = std::mem::take(&mut plan.keys);
    let fold_keys = plan.key_is_email;
    let (dup_keys, dup_emails) = rayon::join(
        || {
            sort_index(&mut keys);
            let dup_keys = duplicates(&keys, |a, b| {
                same_key(
                    fold_keys,
                    plan.str(plan.entries[a as usize].key),
                    plan.str(plan.entries[b as usize].key),
                )
            });
            dup_keys
                .into_iter()
                .map(|i| (i, plan.str(plan.entries[i as usize].key).to_string()))
                .collect::<Vec<(u32, String)>>()
        },
        || emails.duplicates(),
    );
    plan.keys = keys;
    reject_duplicates(
        &mut plan,
        dup_keys,
        Code::DuplicateKey,
        key_name,
        (fold_keys, true),
    );
    reject_duplicates(
        &mut plan,
        dup_emails,
        Code::DuplicateEmail,
        "email",
        (true, false),
    );
    plan
}

/// The first phase's reading on the pool: pieces of the file are mapped
/// each into a part of the plan, and the parts are appended in file order
/// to `whole` (empty, sized for the file).
fn read_pieces<R: Read>(
    snapshot: Snapshot<R>,
    reading: &RowReader<'_>,
    fingerprinter: &Fingerprinter,
    whole: Part,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Plan, EmailIndex), FileError> {
    let Part {
        mut plan,
        mut emails,
    } = whole;
    let profile = reading.profile;
    let end = snapshot.read_chunked(
        &reading.opts.chunks,
        |piece| {
            let mut part = Part::new(profile, Some(piece.len() as u64));
            let mut scratch = Scratch::new(fingerprinter);
            while piece.read_record(&mut scratch.rec)? {
                reading.row(&mut scratch, &mut part);
            }
            Ok(part)
        },
        |part, at| {
            let before = plan.records;
            plan.append(part, at, &mut emails);
            if before >> 16 != plan.records >> 16 {
                progress(Progress {
                    records: plan.records,
                    bytes: at.byte,
                });
            }
        },
    )?;
    plan.bytes = end.byte;
    Ok((plan, emails))
}

/// What one piece of a file makes: its rows as a plan of their own (lines
/// and bytes counted from the piece's start), and its e-mails.
struct Part {
    plan: Plan,
    emails: EmailIndex,
}

impl Part {
    /// An empty part, sized for `bytes` of a file.
    fn new(profile: &Profile, bytes: Option<u64>) -> Part {
        let plan = Plan::new(profile, bytes);
        let mut emails = EmailIndex::default();
        emails.entries.reserve(plan.entries.capacity());
        Part { plan, emails }
    }
}

/// What mapping rows reuses from row to row: the record read, the mapped
/// row, the fingerprinter's buffer and a string for folding case.
struct Scratch {
    rec: Record,
    row: MappedRow,
    fingerprinter: Fingerprinter,
    folded: String,
}

impl Scratch {
    fn new(fingerprinter: &Fingerprinter) -> Scratch {
        Scratch {
            rec: Record::new(),
            row: MappedRow::new(),
            fingerprinter: fingerprinter.clone(),
            folded: String::new(),
        }
    }
}

/// Maps, validates and fingerprints rows into a [`Part`].
struct RowReader<'a> {
    profile: &'a Profile,
    layout: &'a Layout,
    today: Date,
    opts: &'a ReadOptions<'a>,
}

impl RowReader<'_> {
    /// Maps the record in `scratch` into `part`.
    fn row(&self, scratch: &mut Scratch, part: &mut Part) {
        let Scratch {
            rec,
            row,
            fingerprinter,
            folded,
        } = scratch;
        let (rec, row, folded) = (&*rec, row, folded);
        let (profile, layout, opts) = (self.profile, self.layout, self.opts);
        let plan = &mut part.plan;
        plan.records += 1;
        let idx = plan.entries.len() as u32;
        let result = profile.map(rec, layout, row);
        let key = row.key_as_read().map_or(Span::NONE, |k| plan.intern(k));
        let mut entry = Entry {
            line: rec.position().line,
            byte: rec.position().byte,
            key,
            fingerprint: [0; 2],
            message: u32::MAX,
            action: Action::Reject,
            code: None,
            flags: 0,
        };
        if row.decoded_column.is_some() {
            plan.decoded_rows += 1;
        }
        let mapped = result.is_ok();
        let message = match result {
            Ok(()) => {
                let fp = match opts.fingerprints {
                    Fingerprints::Normalised => fingerprinter.fingerprint(row),
                    Fingerprints::Record => rec.content_hash(),
                    Fingerprints::Skip => 0,
                };
                entry.fingerprint = [fp as u64, (fp >> 64) as u64];
                entry.action = Action::Create;
                entry.flags = VALID;
                if profile.status_slot.and_then(|s| row.get(s)) == Some("inactive") {
                    entry.flags |= INACTIVE;
                }
                let end = profile.end_date_slot.and_then(|s| {
                    let value = row.get(s)?;
                    Date::parse_iso(value).filter(|d| *d <= self.today)?;
                    Some((profile.slots[s].name.as_str(), value))
                });
                let invite_later = profile.lifecycle.invite_from.and_then(|s| row.get(s));
                if invite_later
                    .and_then(Date::parse_iso)
                    .is_some_and(|d| d > self.today)
                {
                    entry.flags |= INVITE_LATER;
                }
                // Said in the results line, whatever comes of it.
                let ended = end.map(|(field, date)| {
                    entry.flags |= ENDED;
                    format!("{field} {date} is on or before today ({})", self.today)
                });
                if let Some(r) = profile.reference_slot.and_then(|s| row.get(s)) {
                    let span = plan.intern(r);
                    plan.references.push((idx, span));
                }
                let decoded = row.decoded_column.map(|c| {
                    format!(
                        "column {}: decoded as windows-1252 (the file is not UTF-8)",
                        c + 1
                    )
                });
                let unknown = unknown_list_items(profile, row, opts.refs);
                if unknown.is_some() {
                    entry.code = Some(Code::UnknownReference);
                }
                let parts: Vec<String> = [unknown, ended, decoded].into_iter().flatten().collect();
                parts.join("; ")
            }
            Err(issue) => {
                entry.code = Some(issue.code);
                issue.describe(layout)
            }
        };
        plan.entries.push(entry);
        if !message.is_empty() {
            let i = idx as usize;
            let (a, c) = (plan.entries[i].action, plan.entries[i].code);
            plan.set(i, a, c, message);
        }
        // Duplicate keys and e-mails: every occurrence counts, rejected rows too.
        if !key.is_none() {
            let h = hash_key(plan.key_is_email, plan.str(key), folded);
            plan.keys.push((h, idx));
        }
        if profile.object == ObjectKind::User {
            if let Some(slot) = profile.email_slot {
                if mapped {
                    // A mapped row's e-mail is lower-cased already.
                    if let Some(email) = row.get(slot) {
                        part.emails.push(email, idx);
                    }
                } else if let Some(email) = email_as_read(rec, layout, row, slot) {
                    folded.clear();
                    folded.push_str(email);
                    fold_case(folded);
                    part.emails.push(folded, idx);
                }
            }
        }
    }
}

impl Plan {
    /// Appends the rows of `part`, read from a piece of the file that
    /// starts at `at`, and its e-mails to `emails`.
    fn append(&mut self, part: Part, at: Offset, emails: &mut EmailIndex) {
        let rows = self.entries.len() as u32;
        let arena = self.arena.len() as u32;
        let messages = self.messages.len() as u32;
        let Part {
            plan,
            emails: part_emails,
        } = part;
        self.arena.push_str(&plan.arena);
        self.entries.extend(plan.entries.into_iter().map(|mut e| {
            e.line += at.line;
            e.byte += at.byte;
            if !e.key.is_none() {
                e.key.start += arena;
            }
            if e.message != u32::MAX {
                e.message += messages;
            }
            e
        }));
        self.messages.extend(plan.messages);
        self.keys
            .extend(plan.keys.iter().map(|&(h, i)| (h, i + rows)));
        self.references
            .extend(plan.references.iter().map(|&(i, s)| {
                let span = Span {
                    start: s.start + arena,
                    len: s.len,
                };
                (i + rows, span)
            }));
        emails
            .entries
            .extend(part_emails.entries.iter().map(|&(h, i)| (h, i + rows)));
        self.records += plan.records;
        self.decoded_rows += plan.decoded_rows;
    }
}

/// The e-mail of a row for duplicate detection: the normalised value when the
/// row mapped, else the cell as read.
fn email_as_read<'a>(
    rec: &'a Record,
    layout: &Layout,
    row: &'a MappedRow,
    slot: usize,
) -> Option<&'a str> {
    if let Some(v) = row.get(slot) {
        return Some(v);
    }
    let col = layout.column_of_slot[slot]?;
    let raw = std::str::from_utf8(rec.get(col)?).ok()?.trim();
    (!raw.is_empty()).then_some(raw)
}

/// The rows of a sorted `(hash, row)` list whose value another row also
/// holds (`same(row, row)` tells): each one with the first row of its value.
fn duplicates(sorted: &[(u64, u32)], same: impl Fn(u32, u32) -> bool) -> Vec<u32> {
    let mut dups = Vec::new();
    let mut start = 0;
    while start < sorted.len() {
        let h = sorted[start].0;
        let end = start
            + sorted[start..]
                .iter()
                .take_while(|&&(eh, _)| eh == h)
                .count();
        // Rows are in file order within a run.
        for k in start + 1..end {
            let row = sorted[k].1;
            if let Some(&(_, first)) = sorted[start..k].iter().find(|&&(_, f)| same(f, row)) {
                dups.extend([first, row]);
            }
        }
        start = end;
    }
    dups
}

/// Rows by (lower-cased) e-mail, as xxh3-128 hashes sorted once the file is
/// read: two e-mails are the same when their 128-bit hashes are (the bet the
/// row fingerprints make too: a collision among 2M e-mails has odds of
/// about 10⁻²⁶). 24 bytes a row, written in sequence: no e-mail text is
/// kept, and no hash table costs a cache miss per row.
#[derive(Default)]
struct EmailIndex {
    /// `(hash, row)`.
    entries: Vec<([u64; 2], u32)>,
}

impl EmailIndex {
    fn push(&mut self, folded: &str, row: u32) {
        let h = xxhash_rust::xxh3::xxh3_128(folded.as_bytes());
        self.entries.push(([h as u64, (h >> 64) as u64], row));
    }

    /// Every row whose e-mail another row has, with a name for its group
    /// (the entries are left sorted by hash).
    fn duplicates(&mut self) -> Vec<(u32, String)> {
        crate::index::sort_by_hash(&mut self.entries, |e| e.0[0]);
        let mut dups = Vec::new();
        for run in self
            .entries
            .chunk_by(|a, b| a.0 == b.0)
            .filter(|r| r.len() > 1)
        {
            let group = format!("{:016x}{:016x}", run[0].0[0], run[0].0[1]);
            dups.extend(run.iter().map(|&(_, row)| (row, group.clone())));
        }
        dups
    }
}

/// Rejects every row of `dups` (row, value) unless it has an earlier
/// problem, naming the lines of all occurrences of the value.
/// With `show` the value is named in the message; without, `value` only
/// groups the rows (e-mails, whose text is not kept).
fn reject_duplicates(
    plan: &mut Plan,
    mut dups: Vec<(u32, String)>,
    code: Code,
    name: &str,
    (fold_case, show): (bool, bool),
) {
    if dups.is_empty() {
        return;
    }
    dups.sort_unstable();
    dups.dedup();
    let group = |v: &str| {
        if fold_case {
            v.to_lowercase()
        } else {
            v.to_string()
        }
    };
    let mut lines: ahash::AHashMap<String, Vec<u64>> = ahash::AHashMap::new();
    for (i, v) in &dups {
        lines
            .entry(group(v))
            .or_default()
            .push(plan.entries[*i as usize].line);
    }
    for (i, value) in &dups {
        let e = &plan.entries[*i as usize];
        // An earlier problem of the row wins.
        if e.action == Action::Reject {
            continue;
        }
        let all = &lines[&group(value)];
        let shown: Vec<String> = all.iter().take(10).map(u64::to_string).collect();
        let more = if all.len() > 10 { ", …" } else { "" };
        let what = if show {
            format!("{name} {value:?}")
        } else {
            format!("the same {name}")
        };
        let case = if fold_case && !show {
            "; compared ignoring case"
        } else {
            ""
        };
        let message = format!(
            "{what} occurs {} times in the file (lines {}{more}{case}); no occurrence is applied",
            all.len(),
            shown.join(", ")
        );
        plan.set(*i as usize, Action::Reject, Some(code), message);
    }
}
