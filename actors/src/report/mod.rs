//! Report formats: the versioned scraper→server wire format and the result bundle.
//! (Issues #4, #5.)

pub mod bundle;
pub mod job_text;
