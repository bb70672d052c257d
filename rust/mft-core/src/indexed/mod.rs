//! indexed (work in progress)
