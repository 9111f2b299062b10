//! Tests of [`load`] over real workspace directories.

use super::*;
