//! store-sled (work in progress)
