//! Feeds arbitrary bytes to the binlog file decoder: it must return events or an error,
//! never panic, hang or allocate without bound.
//!
//! Run (stable toolchain): `RUSTC_BOOTSTRAP=1 cargo fuzz run decode_file` from `fuzz/`
//! (see fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rowshift_engine::source::{decode_bytes, DecodeOptions};

fuzz_target!(|data: &[u8]| {
    // Lenient options reach the most code (partial images, partial JSON).
    let lenient = DecodeOptions {
        require_full_row_image: false,
        tables: None,
    };
    let mut n = 0usize;
    let _ = decode_bytes("fuzz.000001", data, lenient, |_| n += 1);
    std::hint::black_box(n);
});
