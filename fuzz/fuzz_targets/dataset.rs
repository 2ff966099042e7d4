#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    promptmner_fuzz::dataset(data);
});
