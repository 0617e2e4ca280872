#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| healthcloud_package::fuzzing::manifest(data));
