pub mod reader;
pub mod results;
#[doc(hidden)]
pub mod testing;
