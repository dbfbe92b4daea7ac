//! `intstr.GetScaledValueFromIntOrPercent`: an int or a percentage of a total, rounded up or
//! down as the caller asks (maxSurge rounds up, maxUnavailable down).

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::Error;

/// Resolves `value` against `total`; `None` means `default`.
pub fn scaled(value: Option<&IntOrString>, default: IntOrString, total: i32, round_up: bool) -> Result<i32, Error> {
    match value.cloned().unwrap_or(default) {
        IntOrString::Int(i) => Ok(i),
        IntOrString::String(s) => {
            let pct: i64 = s.strip_suffix('%').and_then(|n| n.parse().ok()).ok_or_else(|| Error::Invalid {
                what: "int or percentage",
                detail: format!("{s:?} is neither an integer nor a percentage"),
            })?;
            let product = pct * i64::from(total);
            let v = if round_up { (product + 99).div_euclid(100) } else { product.div_euclid(100) };
            Ok(v as i32)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pct(s: &str) -> IntOrString {
        IntOrString::String(s.into())
    }

    #[test]
    fn percentages_round_as_asked() {
        assert_eq!(scaled(Some(&pct("25%")), pct("0%"), 10, true).unwrap(), 3);
        assert_eq!(scaled(Some(&pct("25%")), pct("0%"), 10, false).unwrap(), 2);
        assert_eq!(scaled(Some(&pct("100%")), pct("0%"), 3, false).unwrap(), 3);
        assert_eq!(scaled(None, pct("25%"), 1, true).unwrap(), 1);
        assert_eq!(scaled(None, pct("25%"), 1, false).unwrap(), 0);
        assert_eq!(scaled(Some(&IntOrString::Int(2)), pct("25%"), 100, false).unwrap(), 2);
        assert!(scaled(Some(&pct("x")), pct("0%"), 3, false).is_err());
    }
}
