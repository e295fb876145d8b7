pub mod code;
pub mod gen;
pub mod plan;
pub mod profile;
pub mod reader;
pub mod results;
#[doc(hidden)]
pub mod testing;
