//! CSV output helpers.

/// Appends `field` to `out`, quoted when it must be (it holds the delimiter,
/// the quote, a line break, or starts/ends with a space) or when `always`.
pub fn write_field(out: &mut Vec<u8>, field: &[u8], delimiter: u8, quote: u8, always: bool) {
    let needs = always
        || field.iter().any(|&b| b == delimiter || b == quote || b == b'\n' || b == b'\r')
        || field.first() == Some(&b' ')
        || field.last() == Some(&b' ');
    if !needs {
        out.extend_from_slice(field);
        return;
    }
    out.push(quote);
    let mut from = 0;
    for i in memchr::memchr_iter(quote, field) {
        out.extend_from_slice(&field[from..=i]);
        out.push(quote);
        from = i + 1;
    }
    out.extend_from_slice(&field[from..]);
    out.push(quote);
}
