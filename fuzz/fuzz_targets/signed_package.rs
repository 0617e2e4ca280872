#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| healthcloud_package::fuzzing::signed_package(data));
