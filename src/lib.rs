pub mod code;
pub mod profile;
pub mod reader;
pub mod results;
#[doc(hidden)]
pub mod testing;
