//! The one integration-test binary.
mod cli;
mod fixtures;
mod profile;
mod reader;
