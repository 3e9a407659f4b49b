//! cargo fuzz target `smtp_reply`: feeds libFuzzer's input to [`mailtap_fuzz::smtp_reply`], which checks
//! the properties documented there (a panic or failed assertion is a finding).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mailtap_fuzz::smtp_reply(data));
