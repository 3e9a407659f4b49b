//! cargo fuzz target `netease`: feeds libFuzzer's input to [`mailtap_fuzz::netease`], which checks
//! the properties documented there (a panic or failed assertion is a finding).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailtap_fuzz::netease(data));
