//! store-redis (work in progress)
