//! RSA private keys for the bucket CA and leaf certificates: generation from an injected
//! random source, PEM encoding as PKCS#1 or PKCS#8, and turning a PEM back into a key that
//! can sign. Never reads or writes files.

use rcgen::KeyPair;
use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey};
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::rand_core::{TryCryptoRng, TryRng};
use rsa::PrivateKey;

use super::CertError;

/// Smallest RSA modulus accepted: the signature verifier refuses anything shorter.
pub const MIN_KEY_BITS: usize = 2048;

/// How a private key is written to PEM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEncoding {
    /// `RSA PRIVATE KEY` (PKCS#1).
    Pkcs1,
    /// `PRIVATE KEY` (PKCS#8).
    Pkcs8,
}

/// A freshly generated RSA key, ready to sign and to be written out.
pub(crate) struct GeneratedKey {
    pub(crate) signing: KeyPair,
    pub(crate) pem: String,
}

/// Presents a `rand` 0.9 generator to the `rsa` crate, which speaks a newer `rand_core`.
struct RsaRng<'a, R: ?Sized>(&'a mut R);

impl<R: rand::CryptoRng + ?Sized> TryRng for RsaRng<'_, R> {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(self.0.next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(self.0.next_u64())
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        self.0.fill_bytes(dst);
        Ok(())
    }
}

impl<R: rand::CryptoRng + ?Sized> TryCryptoRng for RsaRng<'_, R> {}

/// Generates an RSA key of `bits` bits from `rng`, encoded as `encoding`.
pub(crate) fn generate<R: rand::CryptoRng + ?Sized>(
    bits: usize,
    encoding: KeyEncoding,
    rng: &mut R,
) -> Result<GeneratedKey, CertError> {
    if bits < MIN_KEY_BITS {
        return Err(CertError::KeyTooSmall { bits });
    }
    let key = PrivateKey::new(&mut RsaRng(rng), bits)
        .map_err(|e| CertError::KeyGeneration(e.to_string()))?;
    let pkcs8 = key
        .to_pkcs8_der()
        .map_err(|e| CertError::KeyGeneration(e.to_string()))?;
    let signing =
        KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.as_bytes().into(), &rcgen::PKCS_RSA_SHA256)
            .map_err(|e| CertError::KeyGeneration(e.to_string()))?;
    let pem = match encoding {
        KeyEncoding::Pkcs1 => key
            .to_pkcs1_pem(LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|e| e.to_string()),
        KeyEncoding::Pkcs8 => key
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|e| e.to_string()),
    }
    .map_err(CertError::KeyGeneration)?;
    Ok(GeneratedKey { signing, pem })
}

/// Parses a private key PEM that may sign: `RSA PRIVATE KEY` (PKCS#1) or `PRIVATE KEY`
/// (PKCS#8 holding an RSA, ECDSA P-256/P-384 or Ed25519 key).
pub(crate) fn signing_key_from_pem(pem: &str) -> Result<KeyPair, CertError> {
    let label = pem_label(pem).ok_or(CertError::KeyNotPem)?;
    match label {
        "RSA PRIVATE KEY" => {
            let key = PrivateKey::from_pkcs1_pem(pem)
                .map_err(|e| CertError::KeyUnreadable(e.to_string()))?;
            let pkcs8 = key
                .to_pkcs8_der()
                .map_err(|e| CertError::KeyUnreadable(e.to_string()))?;
            KeyPair::from_pkcs8_der_and_sign_algo(&pkcs8.as_bytes().into(), &rcgen::PKCS_RSA_SHA256)
                .map_err(|e| CertError::KeyUnreadable(e.to_string()))
        }
        "PRIVATE KEY" => {
            // An RSA key inside PKCS#8 signs with SHA-256 like the keys maand generates;
            // anything else lets rcgen pick the algorithm that fits the key.
            match PrivateKey::from_pkcs8_pem(pem) {
                Ok(_) => KeyPair::from_pkcs8_pem_and_sign_algo(pem, &rcgen::PKCS_RSA_SHA256),
                Err(_) => KeyPair::from_pem(pem),
            }
            .map_err(|e| CertError::KeyUnreadable(e.to_string()))
        }
        other => Err(CertError::KeyUnsupported {
            label: other.to_string(),
        }),
    }
}

/// The label of the first PEM block (`-----BEGIN <label>-----`).
pub(crate) fn pem_label(pem: &str) -> Option<&str> {
    let start = pem.find("-----BEGIN ")? + "-----BEGIN ".len();
    let rest = &pem[start..];
    let end = rest.find("-----")?;
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn pkcs1_and_pkcs8_encodings_use_their_pem_labels() {
        let mut rng = StdRng::seed_from_u64(7);
        let pkcs1 = generate(MIN_KEY_BITS, KeyEncoding::Pkcs1, &mut rng).unwrap();
        assert_eq!(pem_label(&pkcs1.pem), Some("RSA PRIVATE KEY"));
        let pkcs8 = generate(MIN_KEY_BITS, KeyEncoding::Pkcs8, &mut rng).unwrap();
        assert_eq!(pem_label(&pkcs8.pem), Some("PRIVATE KEY"));
    }

    #[test]
    fn both_encodings_read_back_as_the_same_signing_key() {
        let mut rng = StdRng::seed_from_u64(7);
        for encoding in [KeyEncoding::Pkcs1, KeyEncoding::Pkcs8] {
            let generated = generate(MIN_KEY_BITS, encoding, &mut rng).unwrap();
            let loaded = signing_key_from_pem(&generated.pem).unwrap();
            assert_eq!(loaded.public_key_raw(), generated.signing.public_key_raw());
            assert_eq!(loaded.algorithm(), &rcgen::PKCS_RSA_SHA256);
        }
    }

    #[test]
    fn keys_below_the_minimum_are_refused() {
        let mut rng = StdRng::seed_from_u64(7);
        let err = generate(1024, KeyEncoding::Pkcs1, &mut rng).err().unwrap();
        assert!(matches!(err, CertError::KeyTooSmall { bits: 1024 }));
    }

    #[test]
    fn sec1_ec_keys_are_refused_with_their_label() {
        let pem = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n";
        let err = signing_key_from_pem(pem).err().unwrap();
        assert!(err.to_string().contains("EC PRIVATE KEY"));
    }
}
