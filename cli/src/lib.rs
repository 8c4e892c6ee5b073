//! The `distzero` command line, as a library (its tests and benches use it):
//! [`run`] reads a run's log folder and merges its files in order, [`logs`]
//! filters and formats the lines, [`view`] makes the space-time diagram,
//! [`browser`] opens it in headless Chromium (its tests and bench).

pub mod browser;
pub mod logs;
pub mod run;
pub mod view;
