//! Synthetic snapshots for demos, tests and benchmarks (`muster gen`).
//!
//! The output depends only on the profile, the row count and the seed: the
//! generator uses its own SplitMix64 so a seed means the same file across
//! versions of its dependencies. Values are realistic on purpose — accented
//! names, titles with the delimiter, quotes and the odd line break inside
//! quotes, managers, groups, inactive users, past and future end dates.

use std::io::{self, Read, Write};

use crate::model::{Field, FieldKind, ObjectKind};
use crate::profile::{HeaderMode, Profile};
use crate::reader::Record;
use crate::results::write_field;
use crate::snapshot::Snapshot;

/// SplitMix64: tiny, fast, and fixed forever.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p && p > 0.0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

const FIRST: &[&str] = &[
    "Émilie",
    "José",
    "Zoë",
    "François",
    "Łukasz",
    "Anna",
    "Mark",
    "Sofia",
    "Björn",
    "Chloé",
    "Mehmet",
    "Aïcha",
    "Jan",
    "Noémie",
    "Søren",
    "Ines",
    "Pieter",
    "Maëlle",
    "Oğuz",
    "Lena",
    "Tomás",
    "Ana-Maria",
];
const LAST: &[&str] = &[
    "Dupont",
    "Johnson",
    "Müller",
    "O'Brien",
    "van der Berg",
    "Nowak",
    "García",
    "Lindqvist",
    "Peeters",
    "Rossi",
    "Yılmaz",
    "Dubois",
    "Janssens",
    "Kowalski",
    "Andersson",
    "De Smet",
    "Fernández",
    "Østergaard",
];
const TITLES: &[&str] = &[
    "Developer",
    "Sales Representative",
    "Manager, Sales",
    "Head of \"Fun\"",
    "Nurse; night shift",
    "Team Lead",
    "Warehouse Operator",
    "HR Business Partner",
    "Chef de projet",
    "Ingénieur qualité",
];
const LANGS: &[&str] = &["en-US", "fr", "nl", "sv", "de", "en-GB"];

fn ascii_fold(s: &str, out: &mut String) {
    for c in s.chars() {
        let m = match c {
            'é' | 'è' | 'ë' | 'É' => 'e',
            'ï' | 'ı' => 'i',
            'ö' | 'ø' | 'Ø' | 'ó' => 'o',
            'ü' | 'ú' => 'u',
            'ç' => 'c',
            'ğ' => 'g',
            'á' | 'à' | 'ä' => 'a',
            'Ł' | 'ł' => 'l',
            c if c.is_ascii_alphanumeric() => c.to_ascii_lowercase(),
            _ => continue,
        };
        out.push(m);
    }
}

/// The key of generated object `i` for a profile.
fn key_of(profile: &Profile, i: u64) -> String {
    match (profile.object, profile.name.as_str()) {
        (ObjectKind::Group, _) => format!("grp-{i:04}"),
        (ObjectKind::Segment, _) => format!("seg-{i:03}"),
        (_, "lucca-360learning") => format!("{}", 100_000 + i),
        (_, "mobietrain") => format!("E{i:07}"),
        _ => {
            // UUID-shaped, derived from the index.
            let mut r = Rng::new(i);
            let (a, b) = (r.next_u64(), r.next_u64());
            format!(
                "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                a >> 32,
                (a >> 16) & 0xffff,
                a & 0xfff,
                (b >> 48) & 0x3fff | 0x8000,
                b & 0xffff_ffff_ffff
            )
        }
    }
}

/// The values of one generated object, by slot.
fn object_values(
    profile: &Profile,
    i: u64,
    total: u64,
    rng: &mut Rng,
    today_year: u16,
) -> Vec<String> {
    let first = *rng.pick(FIRST);
    let last = *rng.pick(LAST);
    let mut handle = String::new();
    ascii_fold(first, &mut handle);
    handle.push('.');
    ascii_fold(last, &mut handle);
    let email = format!("{handle}.{i}@example.com");
    let sep = (profile.list_separator as char).to_string();
    profile
        .slots
        .iter()
        .map(|slot| match &slot.field {
            Field::ExternalId => key_of(profile, i),
            Field::Username => format!("{handle}.{i}"),
            Field::Email => email.clone(),
            Field::FirstName => first.to_string(),
            Field::LastName => last.to_string(),
            Field::Phone => format!(
                "+32 47{} {:02} {:02} {:02}",
                rng.below(10),
                rng.below(100),
                rng.below(100),
                rng.below(100)
            ),
            Field::Title => {
                if rng.chance(0.002) {
                    "Senior Engineer\n(night team)".to_string()
                } else {
                    rng.pick(TITLES).to_string()
                }
            }
            Field::BirthDate => format!(
                "{}-{:02}-{:02}",
                1960 + rng.below(45),
                1 + rng.below(12),
                1 + rng.below(28)
            ),
            Field::EmployedSince => format!(
                "{}-{:02}-{:02}",
                2000 + rng.below(25),
                1 + rng.below(12),
                1 + rng.below(28)
            ),
            Field::EmployedUntil => {
                if rng.chance(0.03) {
                    format!(
                        "{}-{:02}-{:02}",
                        today_year - 1,
                        1 + rng.below(12),
                        1 + rng.below(28)
                    )
                } else if rng.chance(0.03) {
                    format!(
                        "{}-{:02}-{:02}",
                        today_year + 1,
                        1 + rng.below(12),
                        1 + rng.below(28)
                    )
                } else {
                    String::new()
                }
            }
            Field::Gender => rng.pick(&["M", "F", "X"]).to_string(),
            Field::Language => rng.pick(LANGS).to_string(),
            Field::ManagerId => {
                if i == 0 || rng.chance(0.05) {
                    String::new()
                } else {
                    // Managers sit among the first tenth; some come later in the file.
                    key_of(profile, rng.below((total / 10).max(1)))
                }
            }
            Field::Status => {
                // Managers (the first tenth) stay active, so links resolve.
                if i >= total / 10 && rng.chance(0.02) {
                    "Inactive".to_string()
                } else {
                    "Active".to_string()
                }
            }
            Field::Groups => {
                let n = 1 + rng.below(3);
                (0..n)
                    .map(|_| format!("grp-{:04}", rng.below(200)))
                    .collect::<Vec<_>>()
                    .join(&sep)
            }
            Field::AdminGroups => {
                if rng.chance(0.05) {
                    format!("grp-{:04}", rng.below(200))
                } else {
                    String::new()
                }
            }
            Field::Segments => format!("seg-{:03}", rng.below(20)),
            Field::Name => match profile.object {
                ObjectKind::Group => format!(
                    "{} {}",
                    rng.pick(&["Team", "Department", "Site", "Équipe"]),
                    i
                ),
                _ => format!("{} {}", rng.pick(&["Region", "Country", "Function"]), i),
            },
            Field::ParentId => {
                if i == 0 || rng.chance(0.2) {
                    String::new()
                } else {
                    format!("grp-{:04}", rng.below(i))
                }
            }
            Field::Custom(_) => format!("C{}", rng.below(1000)),
        })
        .collect()
}

/// Writes records in a profile's format.
struct SnapshotWriter<W: Write> {
    out: W,
    delimiter: u8,
    quote: u8,
    columns: usize,
    line: Vec<u8>,
}

impl<W: Write> SnapshotWriter<W> {
    fn new(out: W, profile: &Profile) -> SnapshotWriter<W> {
        let delimiter = match profile.delimiter {
            crate::profile::Delimiter::Fixed(d) => d,
            crate::profile::Delimiter::Auto => b',',
        };
        SnapshotWriter {
            out,
            delimiter,
            quote: profile.quote,
            columns: profile.columns,
            line: Vec::with_capacity(512),
        }
    }

    fn header(&mut self, profile: &Profile) -> io::Result<()> {
        if profile.header == HeaderMode::None {
            return Ok(());
        }
        let mut names = vec![String::new(); self.columns];
        for s in &profile.slots {
            names[s.position] = s.display_name.clone();
        }
        self.write(names.iter().map(String::as_str))
    }

    fn write<'a>(&mut self, fields: impl Iterator<Item = &'a str>) -> io::Result<()> {
        self.encode(fields);
        self.out.write_all(&self.line)
    }

    fn encode<'a>(&mut self, fields: impl Iterator<Item = &'a str>) {
        self.line.clear();
        for (i, f) in fields.enumerate() {
            if i > 0 {
                self.line.push(self.delimiter);
            }
            write_field(
                &mut self.line,
                f.as_bytes(),
                self.delimiter,
                self.quote,
                false,
            );
        }
        self.line.push(b'\n');
    }

    /// Encodes values by slot, laid out by column position, into `self.line`.
    fn encode_slots(&mut self, profile: &Profile, values: &[String]) {
        let mut cols: Vec<&str> = vec![""; self.columns];
        for (s, v) in profile.slots.iter().zip(values) {
            cols[s.position] = v;
        }
        self.encode(cols.into_iter())
    }

    fn write_slots(&mut self, profile: &Profile, values: &[String]) -> io::Result<()> {
        // Shared by `generate`; `derive` encodes first and may keep the line.
        self.encode_slots(profile, values);
        self.out.write_all(&self.line)
    }
}

/// Writes `rows` synthetic objects for `profile`.
pub fn generate<W: Write>(
    profile: &Profile,
    rows: u64,
    seed: u64,
    today_year: u16,
    out: W,
) -> io::Result<()> {
    let mut w = SnapshotWriter::new(io::BufWriter::with_capacity(1 << 16, out), profile);
    w.header(profile)?;
    let mut rng = Rng::new(seed);
    for i in 0..rows {
        let values = object_values(profile, i, rows, &mut rng, today_year);
        w.write_slots(profile, &values)?;
    }
    w.out.flush()
}

/// What `derive` changed, for the caller's summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub kept: u64,
    pub updated: u64,
    pub deactivated: u64,
    pub cosmetic: u64,
    pub deleted: u64,
    pub created: u64,
}

/// Derives a changed snapshot from `old`: of a share `ratio` of the rows,
/// half are touched (70 % a real update, 15 % deactivated, 15 % a change that
/// must normalise away: e-mail case, list order), a quarter deleted, and a
/// quarter as many new rows are added. With `shuffle`, rows come out in a
/// random order.
pub fn derive<R: Read, W: Write>(
    profile: &Profile,
    old: R,
    ratio: f64,
    seed: u64,
    shuffle: bool,
    today_year: u16,
    out: W,
) -> Result<Changes, crate::plan::FileError> {
    use crate::plan::FileError;
    let mut rng = Rng::new(seed.wrapping_add(1));
    let mut snapshot = Snapshot::open(profile, old)?;
    let layout = snapshot.layout().clone();
    let mut rec = Record::new();
    let io_err = |e: io::Error| FileError::Read(e.into());
    let mut w = SnapshotWriter::new(io::BufWriter::with_capacity(1 << 16, out), profile);
    w.header(profile).map_err(io_err)?;
    // Encoded lines, kept only when they must be shuffled.
    let mut lines: Vec<Box<[u8]>> = Vec::new();
    let emit = |w: &mut SnapshotWriter<io::BufWriter<W>>,
                values: &[String],
                lines: &mut Vec<Box<[u8]>>|
     -> io::Result<()> {
        w.encode_slots(profile, values);
        if shuffle {
            lines.push(w.line.as_slice().into());
            Ok(())
        } else {
            w.out.write_all(&w.line)
        }
    };
    let mut changes = Changes::default();
    let mut max_index = 0u64;
    while snapshot.read_record(&mut rec)? {
        let mut values: Vec<String> = profile
            .slots
            .iter()
            .enumerate()
            .map(|(s, _)| {
                layout.column_of_slot[s]
                    .and_then(|c| rec.get(c))
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .unwrap_or_default()
            })
            .collect();
        max_index += 1;
        if !rng.chance(ratio) {
            changes.kept += 1;
            emit(&mut w, &values, &mut lines).map_err(io_err)?;
            continue;
        }
        let roll = rng.below(100);
        if roll < 25 {
            changes.deleted += 1;
            continue;
        }
        if roll < 50 {
            changes.kept += 1;
            emit(&mut w, &values, &mut lines).map_err(io_err)?;
            let fresh = object_values(
                profile,
                10_000_000 + max_index + changes.created,
                u64::MAX,
                &mut rng,
                today_year,
            );
            changes.created += 1;
            emit(&mut w, &fresh, &mut lines).map_err(io_err)?;
            continue;
        }
        let kind = rng.below(100);
        let slot_of = |f: Field| profile.slot(&f);
        if kind < 15 {
            if let Some(s) = slot_of(Field::Status) {
                values[s] = "Inactive".into();
            } else if let Some(s) = profile.end_date_slot {
                values[s] = format!("{}-01-01", today_year - 1);
            }
            changes.deactivated += 1;
        } else if kind < 30 {
            // Normalises away: e-mail case, list order.
            if let Some(s) = slot_of(Field::Email) {
                values[s] = values[s].to_uppercase();
            }
            for f in [Field::Groups, Field::Segments] {
                if let Some(s) = slot_of(f) {
                    let sep = profile.list_separator as char;
                    let mut items: Vec<&str> = values[s].split(sep).collect();
                    items.reverse();
                    values[s] = items.join(&sep.to_string());
                }
            }
            changes.cosmetic += 1;
        } else {
            let target = [Field::Title, Field::LastName, Field::Name, Field::Language]
                .into_iter()
                .find_map(slot_of)
                .unwrap_or(0);
            let kind = profile.slots[target].kind;
            values[target] = match kind {
                FieldKind::Text if !values[target].ends_with(" (moved)") => {
                    format!("{} (moved)", values[target])
                }
                _ => format!("{}x", values[target]),
            };
            changes.updated += 1;
        }
        emit(&mut w, &values, &mut lines).map_err(io_err)?;
    }
    for i in (1..lines.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        lines.swap(i, j);
    }
    for line in &lines {
        w.out.write_all(line).map_err(io_err)?;
    }
    w.out.flush().map_err(io_err)?;
    Ok(changes)
}
