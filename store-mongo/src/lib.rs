//! store-mongo (work in progress)
