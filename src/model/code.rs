//! The stable codes of the results file (SPEC §4).

use std::fmt;

/// Why a row was rejected, or what to know about an applied one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Code {
    // Parse errors.
    FieldCount,
    InvalidUtf8,
    UnterminatedQuote,
    /// A raw record longer than the profile's `max_record_bytes`.
    RecordTooLarge,
    /// A field longer than the profile's `max_field_bytes`.
    FieldTooLarge,
    /// A JSON Lines record that is not a JSON object, or a value that is
    /// an object where the profile reads a value.
    InvalidJson,
    // Validation.
    MissingField,
    InvalidEmail,
    InvalidDate,
    UnknownStatus,
    DuplicateKey,
    DuplicateEmail,
    // Plan.
    UnknownReference,
    GroupCycle,
    // Sink.
    SinkRejected,
    SinkUnavailable,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::FieldCount => "field_count",
            Code::InvalidUtf8 => "invalid_utf8",
            Code::UnterminatedQuote => "unterminated_quote",
            Code::RecordTooLarge => "record_too_large",
            Code::FieldTooLarge => "field_too_large",
            Code::InvalidJson => "invalid_json",
            Code::MissingField => "missing_field",
            Code::InvalidEmail => "invalid_email",
            Code::InvalidDate => "invalid_date",
            Code::UnknownStatus => "unknown_status",
            Code::DuplicateKey => "duplicate_key",
            Code::DuplicateEmail => "duplicate_email",
            Code::UnknownReference => "unknown_reference",
            Code::GroupCycle => "group_cycle",
            Code::SinkRejected => "sink_rejected",
            Code::SinkUnavailable => "sink_unavailable",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
