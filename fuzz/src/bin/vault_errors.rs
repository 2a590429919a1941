#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| vault_luks::fuzz::vault_errors(data));
