//! curlyq facade.
