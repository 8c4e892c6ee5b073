//! Virtual-mode figures (filled in below).
fn main() {}
