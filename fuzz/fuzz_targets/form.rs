//! cargo fuzz target `form`: feeds libFuzzer's input to [`mailtap_fuzz::form`], which checks
//! the properties documented there (a panic or failed assertion is a finding).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailtap_fuzz::form(data));
