pub mod catalog;
pub mod severity;
