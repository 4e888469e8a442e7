//! Stub so other crates can name this package; the program lives in the
//! `sensor` and `floor` binaries.
#![no_std]
