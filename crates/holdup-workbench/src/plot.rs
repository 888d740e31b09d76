//! The workbench's plots live in `holdup-plot` (shared with `holdup report`);
//! this re-export keeps `crate::plot::...` call sites as they are.

pub use holdup_plot::*;
