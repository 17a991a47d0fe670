//! `axrelay secret`: a fresh secret for `[hash] secret` or `encrypt`.

use data_encoding::BASE64;

use super::{random_key, Status};

/// Print base64 of 32 random bytes (44 characters, padded, like 2014).
pub fn secret() -> Status {
    match random_key() {
        Ok(key) => {
            println!("{}", BASE64.encode(&key));
            Status::Ok
        }
        Err(status) => status,
    }
}
