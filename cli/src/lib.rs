//! The `distzero` command line, as a library (its tests and benches use it):
//! [`run`] reads a run's log folder and merges its files in order, [`logs`]
//! filters and formats the lines, [`view`] makes the space-time diagram.

pub mod logs;
pub mod run;
pub mod view;
