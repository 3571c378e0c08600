//! F6: the stored-record decoder over corrupt rows. Whatever it accepts must
//! survive another encode/decode unchanged, and its values must decode (or
//! fail) within the depth limit.
#![no_main]

use bytes::Bytes;
use cloakroom::Record;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = Record::decode(&Bytes::copy_from_slice(data)) else {
        return;
    };
    let again = record.encode();
    assert_eq!(again.len(), record.encoded_len());
    assert_eq!(Record::decode(&again).as_ref(), Ok(&record));
    for key in record.keys() {
        let _ = record.get::<serde_json::Value>(key);
    }
});
