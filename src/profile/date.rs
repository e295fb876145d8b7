//! Explicit date formats, compiled once. Nothing is guessed: `01/02/2026`
//! means what the profile's format says, or it is `invalid_date`.

use std::fmt;

/// A calendar date (no time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    pub year: u16,
    pub month: u8,
    pub day: u8,
}

impl Date {
    pub fn new(year: u16, month: u8, day: u8) -> Option<Date> {
        if (1..=12).contains(&month) && day >= 1 && day <= days_in_month(year, month) {
            Some(Date { year, month, day })
        } else {
            None
        }
    }

    /// Parses ISO `YYYY-MM-DD`.
    pub fn parse_iso(s: &str) -> Option<Date> {
        let b: &[u8; 10] = s.as_bytes().try_into().ok()?;
        // Every digit and both dashes in one test, without a branch each.
        let d = |i: usize| b[i].wrapping_sub(b'0');
        let digits = [0, 1, 2, 3, 5, 6, 8, 9]
            .iter()
            .fold(true, |ok, &i| ok & (d(i) < 10));
        if !(digits & (b[4] == b'-') & (b[7] == b'-')) {
            return None;
        }
        let n = |i: usize| u16::from(d(i));
        Date::new(
            n(0) * 1000 + n(1) * 100 + n(2) * 10 + n(3),
            (n(5) * 10 + n(6)) as u8,
            (n(8) * 10 + n(9)) as u8,
        )
    }

    /// The date in 32 bits, never 0 (`year << 9 | month << 5 | day`), as
    /// the state store keeps it.
    pub(crate) fn pack(self) -> u32 {
        u32::from(self.year) << 9 | u32::from(self.month) << 5 | u32::from(self.day)
    }

    /// A date [`Date::pack`] made; `None` for 0 or what is not a date.
    pub(crate) fn unpack(v: u32) -> Option<Date> {
        Date::new((v >> 9) as u16, (v >> 5 & 15) as u8, (v & 31) as u8)
    }

    /// The date `days` days later.
    pub fn plus_days(self, days: u32) -> Date {
        let later = jiff::civil::Date::new(self.year as i16, self.month as i8, self.day as i8)
            .ok()
            .and_then(|d| d.checked_add(jiff::Span::new().days(i64::from(days))).ok());
        match later {
            Some(d) => Date {
                year: d.year() as u16,
                month: d.month() as u8,
                day: d.day() as u8,
            },
            // Past the calendar's end: never reached.
            None => Date {
                year: 9999,
                month: 12,
                day: 31,
            },
        }
    }

    /// Writes `YYYY-MM-DD` into `out`.
    pub fn write_iso(self, out: &mut String) {
        let b = [
            b'0' + (self.year / 1000 % 10) as u8,
            b'0' + (self.year / 100 % 10) as u8,
            b'0' + (self.year / 10 % 10) as u8,
            b'0' + (self.year % 10) as u8,
            b'-',
            b'0' + self.month / 10,
            b'0' + self.month % 10,
            b'-',
            b'0' + self.day / 10,
            b'0' + self.day % 10,
        ];
        // The bytes are ASCII digits and dashes.
        out.push_str(std::str::from_utf8(&b).unwrap_or_default());
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        _ => 28,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    Year,
    Month { exact: bool },
    Day { exact: bool },
    Literal(u8),
}

/// A compiled date format: `%Y` (4 digits), `%m` / `%d` (2 digits), `%-m` /
/// `%-d` (1 or 2 digits), `%%`, and literal ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DateFormat {
    source: String,
    tokens: Vec<Token>,
}

impl DateFormat {
    pub fn compile(source: &str) -> Result<DateFormat, String> {
        let b = source.as_bytes();
        let mut tokens = Vec::new();
        let mut i = 0;
        let (mut y, mut m, mut d) = (0, 0, 0);
        while i < b.len() {
            if b[i] == b'%' {
                let (tok, len) = match (b.get(i + 1), b.get(i + 2)) {
                    (Some(b'Y'), _) => (Token::Year, 2),
                    (Some(b'm'), _) => (Token::Month { exact: true }, 2),
                    (Some(b'd'), _) => (Token::Day { exact: true }, 2),
                    (Some(b'-'), Some(b'm')) => (Token::Month { exact: false }, 3),
                    (Some(b'-'), Some(b'd')) => (Token::Day { exact: false }, 3),
                    (Some(b'%'), _) => (Token::Literal(b'%'), 2),
                    _ => {
                        return Err(format!(
                            "date format {source:?}: unknown directive at {i} (use %Y, %m, %d, %-m, %-d)"
                        ))
                    }
                };
                match tok {
                    Token::Year => y += 1,
                    Token::Month { .. } => m += 1,
                    Token::Day { .. } => d += 1,
                    Token::Literal(_) => {}
                }
                tokens.push(tok);
                i += len;
            } else if b[i].is_ascii() {
                tokens.push(Token::Literal(b[i]));
                i += 1;
            } else {
                return Err(format!(
                    "date format {source:?}: only ASCII literals are supported"
                ));
            }
        }
        if (y, m, d) != (1, 1, 1) {
            return Err(format!(
                "date format {source:?} must name the year, the month and the day once each"
            ));
        }
        Ok(DateFormat {
            source: source.to_string(),
            tokens,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn parse(&self, s: &str) -> Option<Date> {
        parse_tokens(&self.tokens, s)
    }
}

fn parse_tokens(tokens: &[Token], s: &str) -> Option<Date> {
    let b = s.as_bytes();
    let mut i = 0;
    let (mut year, mut month, mut day) = (0u16, 0u8, 0u8);
    for tok in tokens {
        match *tok {
            Token::Literal(c) => {
                if b.get(i) != Some(&c) {
                    return None;
                }
                i += 1;
            }
            Token::Year => {
                year = digits(b, &mut i, 4, 4)? as u16;
            }
            Token::Month { exact } => {
                month = digits(b, &mut i, if exact { 2 } else { 1 }, 2)? as u8;
            }
            Token::Day { exact } => {
                day = digits(b, &mut i, if exact { 2 } else { 1 }, 2)? as u8;
            }
        }
    }
    if i != b.len() {
        return None;
    }
    Date::new(year, month, day)
}

fn digits(b: &[u8], i: &mut usize, min: usize, max: usize) -> Option<u32> {
    let mut n = 0u32;
    let mut len = 0;
    while len < max {
        match b.get(*i) {
            Some(c) if c.is_ascii_digit() => {
                n = n * 10 + (c - b'0') as u32;
                *i += 1;
                len += 1;
            }
            _ => break,
        }
    }
    (len >= min).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The first version, a digit at a time: the oracle of `parse_iso`.
    fn parse_iso_oracle(s: &str) -> Option<Date> {
        let b = s.as_bytes();
        if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
            return None;
        }
        let mut n = [0u16; 8];
        for (i, &p) in [0, 1, 2, 3, 5, 6, 8, 9].iter().enumerate() {
            let c = b[p];
            if !c.is_ascii_digit() {
                return None;
            }
            n[i] = (c - b'0') as u16;
        }
        Date::new(
            n[0] * 1000 + n[1] * 100 + n[2] * 10 + n[3],
            (n[4] * 10 + n[5]) as u8,
            (n[6] * 10 + n[7]) as u8,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]
        #[test]
        fn parse_iso_agrees_with_the_oracle(s in prop_oneof![
            "[0-9]{4}-[01][0-9]-[0-3][0-9]",
            "[0-9/:-]{8,11}",
            "[0-9é-]{8,11}",
            "[0-9]{4}[-/0][01][0-9][-/0][0-3][0-9]",
            "(19|20)[0-9]{2}-02-(2[89]|3[01])",
        ]) {
            prop_assert_eq!(Date::parse_iso(&s), parse_iso_oracle(&s), "{:?}", s);
        }
    }

    #[test]
    fn iso_and_explicit_formats() {
        assert_eq!(Date::parse_iso("2026-02-28"), Date::new(2026, 2, 28));
        assert_eq!(Date::parse_iso("2026-02-29"), None);
        assert_eq!(Date::parse_iso("2024-02-29"), Date::new(2024, 2, 29));
        assert_eq!(Date::parse_iso("2026-2-28"), None);
        assert_eq!(Date::parse_iso("2026-02-28x"), None);
        let dmy = DateFormat::compile("%d/%m/%Y").unwrap();
        assert_eq!(dmy.parse("01/02/2026"), Date::new(2026, 2, 1));
        let loose = DateFormat::compile("%-d.%-m.%Y").unwrap();
        assert_eq!(loose.parse("1.2.2026"), Date::new(2026, 2, 1));
        assert_eq!(loose.parse("01.12.2026"), Date::new(2026, 12, 1));
        assert!(DateFormat::compile("%d/%m").is_err());
        assert!(DateFormat::compile("%H").is_err());
        let mut s = String::new();
        Date::new(987, 3, 4).unwrap().write_iso(&mut s);
        assert_eq!(s, "0987-03-04");
    }
}
