//! Identity codes of DOMAIN.md section 2, as plain functions the CLI can call before
//! signing. Input must already be canonical (trimmed, ASCII upper case, half-width, no
//! separators): anything else is `NonCanonical`, never silently fixed, and that check
//! comes before the length and charset checks of every code type.

use cbec_ledger::time;

/// Why a code is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("not canonical (trimmed, ASCII upper case, half-width)")]
    NonCanonical,
    #[error("wrong length: expected {expected} characters, found {found}")]
    BadLength { expected: usize, found: usize },
    #[error("character `{found}` at position {position} is not allowed")]
    BadCharset { position: usize, found: char },
    #[error("check character is `{found}`, expected `{expected}`")]
    BadCheck { expected: char, found: char },
    #[error("birth date {0} is not a real past date")]
    BadDate(String),
    #[error("chapter {0} is not an HS chapter (01-97, not 77)")]
    BadChapter(String),
}

/// Every code type's characters are ASCII digits and upper-case letters; anything else
/// (a space, a dot or dash between groups, lower case, full-width forms) is a
/// non-canonical spelling, whatever the code's length.
fn canonical(code: &str) -> Result<(), CodeError> {
    let is_canonical = code
        .bytes()
        .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
    if is_canonical {
        Ok(())
    } else {
        Err(CodeError::NonCanonical)
    }
}

fn length(code: &str, expected: usize) -> Result<(), CodeError> {
    if code.len() == expected {
        Ok(())
    } else {
        Err(CodeError::BadLength {
            expected,
            found: code.chars().count(),
        })
    }
}

/// The USCC alphabet: a character's value is its index (no I, O, S, V, Z).
const USCC_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

/// The check character of a USCC's first 17 characters (values checked as in [`uscc`]).
fn uscc_check(body: &[u8]) -> Result<char, CodeError> {
    let mut sum = 0;
    for (i, weight) in USCC_WEIGHTS.iter().enumerate() {
        sum += uscc_value(i, body[i])? * weight;
    }
    Ok(char::from(USCC_ALPHABET[((31 - sum % 31) % 31) as usize]))
}

fn uscc_value(i: usize, c: u8) -> Result<u32, CodeError> {
    // Positions 3-8 (the region) are digits; all others use the alphabet.
    let ok = if (2..8).contains(&i) {
        c.is_ascii_digit()
    } else {
        USCC_ALPHABET.contains(&c)
    };
    if !ok {
        return Err(CodeError::BadCharset {
            position: i + 1,
            found: char::from(c),
        });
    }
    Ok(USCC_ALPHABET.iter().position(|a| *a == c).unwrap_or(0) as u32)
}

/// Unified Social Credit Code (GB 32100-2015).
pub fn uscc(code: &str) -> Result<(), CodeError> {
    canonical(code)?;
    length(code, 18)?;
    let bytes = code.as_bytes();
    let expected = uscc_check(&bytes[..17])?;
    uscc_value(17, bytes[17])?;
    let found = char::from(bytes[17]);
    if expected != found {
        return Err(CodeError::BadCheck { expected, found });
    }
    Ok(())
}

/// Completes the first 17 characters of a USCC with its check character.
pub fn uscc_with_check(body: &str) -> Result<String, CodeError> {
    canonical(body)?;
    length(body, 17)?;
    let check = uscc_check(body.as_bytes())?;
    Ok(format!("{body}{check}"))
}

const RESIDENT_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];

/// Resident identity number (GB 11643). `today_ms` (block time) bounds the birth date.
pub fn resident_id(code: &str, today_ms: u64) -> Result<(), CodeError> {
    canonical(code)?;
    length(code, 18)?;
    let bytes = code.as_bytes();
    for (i, c) in bytes.iter().enumerate() {
        let ok = c.is_ascii_digit() || (i == 17 && *c == b'X');
        if !ok {
            return Err(CodeError::BadCharset {
                position: i + 1,
                found: char::from(*c),
            });
        }
    }
    let digits = |r: std::ops::Range<usize>| code[r].parse::<u32>().unwrap_or(0);
    let (year, month, day) = (digits(6..10), digits(10..12), digits(12..14));
    let date = &code[6..14];
    let real =
        (1..=12).contains(&month) && day >= 1 && day <= time::days_in_month(i64::from(year), month);
    let birth_ms = time::days_from_civil(i64::from(year), month, day) * 86_400_000;
    if !real || year < 1900 || birth_ms > today_ms as i64 {
        return Err(CodeError::BadDate(date.to_string()));
    }
    let sum: u32 = bytes[..17]
        .iter()
        .zip(RESIDENT_WEIGHTS)
        .map(|(c, w)| u32::from(c - b'0') * w)
        .sum();
    let expected = char::from(b"10X98765432"[(sum % 11) as usize]);
    let found = char::from(bytes[17]);
    if expected != found {
        return Err(CodeError::BadCheck { expected, found });
    }
    Ok(())
}

/// GTIN-13 barcode.
pub fn gtin13(code: &str) -> Result<(), CodeError> {
    canonical(code)?;
    length(code, 13)?;
    if let Some((position, c)) = code.chars().enumerate().find(|(_, c)| !c.is_ascii_digit()) {
        return Err(CodeError::BadCharset {
            position: position + 1,
            found: c,
        });
    }
    let digits: Vec<u32> = code.bytes().map(|b| u32::from(b - b'0')).collect();
    // Weights 3, 1, 3, ... from the rightmost body digit.
    let sum: u32 = digits[..12]
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| d * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    let expected = char::from(b'0' + ((10 - sum % 10) % 10) as u8);
    let found = char::from(code.as_bytes()[12]);
    if expected != found {
        return Err(CodeError::BadCheck { expected, found });
    }
    Ok(())
}

/// Customs commodity code: 10 digits, the first 6 the HS code, chapter 01-97 but 77.
pub fn commodity_code(code: &str) -> Result<(), CodeError> {
    canonical(code)?;
    length(code, 10)?;
    if let Some((position, c)) = code.chars().enumerate().find(|(_, c)| !c.is_ascii_digit()) {
        return Err(CodeError::BadCharset {
            position: position + 1,
            found: c,
        });
    }
    let chapter: u32 = code[..2].parse().unwrap_or(0);
    if !(1..=97).contains(&chapter) || chapter == 77 {
        return Err(CodeError::BadChapter(code[..2].to_string()));
    }
    Ok(())
}

/// Customs registration code of an enterprise: 10 characters, digits and upper-case
/// letters.
pub fn customs_code(code: &str) -> Result<(), CodeError> {
    canonical(code)?;
    length(code, 10)?;
    if let Some((position, c)) = code
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_digit() || c.is_ascii_uppercase()))
    {
        return Err(CodeError::BadCharset {
            position: position + 1,
            found: c,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_795_721_744_000; // 2026-11-26

    #[test]
    fn uscc_vectors_from_domain_md() {
        assert_eq!(uscc("914403001922038216"), Ok(()));
        assert_eq!(uscc("91140200MA0GRK2220"), Ok(()));
        assert_eq!(
            uscc("91350100M000100Y4A"),
            Err(CodeError::BadCheck {
                expected: '3',
                found: 'A'
            })
        );
        assert_eq!(
            uscc("9111010855138508Q"),
            Err(CodeError::BadLength {
                expected: 18,
                found: 17
            })
        );
        assert_eq!(uscc("91140200ma0grk2220"), Err(CodeError::NonCanonical));
        assert_eq!(uscc(" 914403001922038216"), Err(CodeError::NonCanonical));
        assert_eq!(uscc("９14403001922038216"), Err(CodeError::NonCanonical));
        assert!(matches!(
            uscc("91440300192203821I"),
            Err(CodeError::BadCharset { position: 18, .. })
        ));
        assert!(matches!(
            uscc("9144030O1922038216"),
            Err(CodeError::BadCharset { .. })
        ));
    }

    #[test]
    fn resident_id_vectors_from_domain_md() {
        assert_eq!(resident_id("11010519491231002X", NOW), Ok(()));
        assert_eq!(
            resident_id("110105194912310021", NOW),
            Err(CodeError::BadCheck {
                expected: 'X',
                found: '1'
            })
        );
        assert!(matches!(
            resident_id("110105194913310021", NOW),
            Err(CodeError::BadDate(_))
        ));
        assert!(matches!(
            resident_id("110105209912310021", NOW),
            Err(CodeError::BadDate(_))
        ));
        assert_eq!(
            resident_id("11010519491231002x", NOW),
            Err(CodeError::NonCanonical)
        );
    }

    #[test]
    fn gtin_vectors_from_domain_md() {
        assert_eq!(gtin13("6901234567892"), Ok(()));
        assert_eq!(
            gtin13("6901234567890"),
            Err(CodeError::BadCheck {
                expected: '2',
                found: '0'
            })
        );
        assert!(matches!(
            gtin13("69012345678"),
            Err(CodeError::BadLength { .. })
        ));
    }

    /// Separators and other non-canonical characters are `NonCanonical` whatever the
    /// length, for every code type: the canonical-form check comes first.
    #[test]
    fn separators_are_non_canonical_before_length_or_charset() {
        type Check = fn(&str) -> Result<(), CodeError>;
        let resident: Check = |c| resident_id(c, NOW);
        let cases: [(&str, Check, &str); 5] = [
            ("uscc", uscc, "914403001922038216"),
            ("resident id", resident, "11010519491231002X"),
            ("gtin", gtin13, "6901234567892"),
            ("commodity", commodity_code, "3304990099"),
            ("customs code", customs_code, "1402960ABC"),
        ];
        for (name, check, valid) in cases {
            assert_eq!(check(valid), Ok(()), "{name}");
            let (head, tail) = valid.split_at(4);
            for spelled in [
                format!("{head}.{tail}"),           // one longer
                format!("{head}-{tail}"),           // one longer
                format!("{head} {}", &tail[1..]),   // same length
                format!("{head}.{}", &tail[2..]),   // one shorter
                format!("{}\u{3000}", &valid[1..]), // full-width space
                format!("\u{ff19}{}", &valid[1..]), // full-width digit 9
                format!("{valid}\n"),
                format!("{}/", &valid[..valid.len() - 1]), // same length
            ] {
                assert_eq!(
                    check(&spelled),
                    Err(CodeError::NonCanonical),
                    "{name}: {spelled:?}"
                );
            }
        }
        // The dotted HS spelling of a commodity code (3304.99.0099): not a length error.
        assert_eq!(commodity_code("3304.99.0099"), Err(CodeError::NonCanonical));
        assert_eq!(commodity_code("3304.99"), Err(CodeError::NonCanonical));
        // Canonical but wrong: the later checks still speak.
        assert!(matches!(
            commodity_code("33049900"),
            Err(CodeError::BadLength { .. })
        ));
    }

    #[test]
    fn commodity_codes() {
        assert_eq!(commodity_code("3304990099"), Ok(()));
        assert_eq!(
            commodity_code("7700000000"),
            Err(CodeError::BadChapter("77".into()))
        );
        assert_eq!(
            commodity_code("9800000000"),
            Err(CodeError::BadChapter("98".into()))
        );
        assert_eq!(
            commodity_code("0000000000"),
            Err(CodeError::BadChapter("00".into()))
        );
        assert!(matches!(
            commodity_code("33049900"),
            Err(CodeError::BadLength { .. })
        ));
    }
}
