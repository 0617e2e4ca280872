#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| healthcloud_integration::fuzzing::search_query(data));
