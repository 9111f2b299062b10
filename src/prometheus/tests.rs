//! Tests of the prometheus module.
