use crate::AuthError;

/// Checks E.164: `+`, then 7 to 15 digits, the first not zero.
pub fn validate_phone(phone: &str) -> Result<(), AuthError> {
    let digits = phone.strip_prefix('+').ok_or(AuthError::InvalidPhone)?;
    let ok = (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if ok {
        Ok(())
    } else {
        Err(AuthError::InvalidPhone)
    }
}

/// Checks a display name: 1 to 64 characters, not blank, no control characters.
pub fn validate_name(name: &str) -> Result<(), AuthError> {
    let len = name.chars().count();
    let ok =
        (1..=64).contains(&len) && !name.trim().is_empty() && !name.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(AuthError::InvalidName)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones() {
        for good in ["+4915112345678", "+1234567", "+123456789012345"] {
            assert!(validate_phone(good).is_ok(), "{good}");
        }
        for bad in [
            "4915112345678",
            "+0123456789",
            "+123456",
            "+1234567890123456",
            "+49 151",
            "+49a5112345",
        ] {
            assert!(validate_phone(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(validate_name("Ada Lovelace").is_ok());
        assert!(validate_name(&"é".repeat(64)).is_ok());
        for bad in ["", "   ", "a\nb", &"x".repeat(65)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
