//! The writing end of a growing layer blob: the type lives in [`crate::live`], shared with the
//! registry's uploader, which reads it without depending on `layer`.

pub(crate) use crate::live::publish;
pub use crate::live::{LiveBlob, LiveProgress};
