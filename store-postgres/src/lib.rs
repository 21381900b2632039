//! store-postgres (work in progress)
