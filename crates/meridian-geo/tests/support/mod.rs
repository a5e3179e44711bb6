//! Test fixtures shared by the integration tests. Each test binary uses part of them.
#![allow(dead_code)]

pub mod mmdb;
