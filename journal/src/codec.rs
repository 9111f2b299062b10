//! Owns the payload codec: bincode 2 through serde with the standard configuration.
//! It never touches the database and never interprets payloads; callers pick the types and
//! carry their own `kind`/`schema_version` to know which type to decode into.

use crate::JournalError;

/// Encodes `value` with bincode 2 (serde, standard configuration).
pub fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, JournalError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(|err| {
        JournalError::Codec(format!(
            "cannot encode a {} as bincode: {err}",
            std::any::type_name::<T>()
        ))
    })
}

/// Decodes bytes produced by [`encode`] into a `T`.
///
/// Every byte must be consumed: trailing bytes mean the payload was written for another type
/// (or another schema version) and are reported as an error instead of being ignored.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, JournalError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map_err(|err| {
            JournalError::Codec(format!(
                "cannot decode {} payload bytes as a {}: {err}; check the event kind and schema version \
                 before choosing the type",
                bytes.len(),
                std::any::type_name::<T>()
            ))
        })?;
    if used != bytes.len() {
        return Err(JournalError::Codec(format!(
            "decoding a {} used {used} of {} payload bytes; the payload was written for a different \
             type or schema version",
            std::any::type_name::<T>(),
            bytes.len()
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    enum Sample {
        Started { name: String, attempt: u32 },
        Stopped,
    }

    #[test]
    fn a_value_survives_encode_then_decode() {
        let value = Sample::Started {
            name: "web".into(),
            attempt: 3,
        };
        let bytes = encode(&value).unwrap();
        assert_eq!(decode::<Sample>(&bytes).unwrap(), value);
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode(&Sample::Stopped).unwrap();
        bytes.push(0);
        let err = decode::<Sample>(&bytes).unwrap_err();
        assert!(
            err.to_string().contains("used 1 of 2 payload bytes"),
            "{err}"
        );
    }

    #[test]
    fn truncated_payload_names_the_target_type() {
        let bytes = encode(&Sample::Started {
            name: "web".into(),
            attempt: 3,
        })
        .unwrap();
        let err = decode::<Sample>(&bytes[..2]).unwrap_err();
        assert!(err.to_string().contains("Sample"), "{err}");
    }
}
