//! The rowshift pipeline.

pub mod apply;
pub mod conn;
pub mod copy;
pub mod cutover;
pub mod event;
pub mod position;
pub mod sqlvalue;
