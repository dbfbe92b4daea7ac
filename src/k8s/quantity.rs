//! Kubernetes resource quantities ("500m", "4Gi", "1.5", "2e3") as integers: CPU in
//! millicores and everything else in whole units, both rounded up like `resource.Quantity`.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The value of `q` in thousandths of a unit (CPU millicores), rounded up; `None` if malformed.
pub fn milli_value(q: &Quantity) -> Option<i64> {
    scaled(&q.0, 1000)
}

/// The value of `q` in whole units (bytes, pods), rounded up; `None` if malformed.
pub fn value(q: &Quantity) -> Option<i64> {
    scaled(&q.0, 1)
}

/// A quantity's sign (negative?), number (digits with at most one dot) and suffix.
fn split(text: &str) -> Option<(bool, &str, &str)> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let number_end = body.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(body.len());
    let (number, suffix) = body.split_at(number_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return None;
    }
    Some((negative, number, suffix))
}

/// `text * factor`, rounded towards +infinity and saturated to the i64 range.
fn scaled(text: &str, factor: i128) -> Option<i64> {
    let text = text.trim();
    let (negative, number, suffix) = split(text)?;
    let (pow10, pow2) = suffix_exponents(suffix)?;
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    let mut mantissa: i128 = 0;
    let mut frac_digits = 0i32;
    for (i, c) in whole.chars().chain(frac.chars()).enumerate() {
        if mantissa > i128::MAX / 100 {
            // Beyond ~37 significant digits: further digits cannot change a saturated i64.
            if i >= whole.len() {
                break;
            }
            mantissa = i128::MAX / 100;
            continue;
        }
        mantissa = mantissa * 10 + i128::from(c.to_digit(10)? as u8);
        if i >= whole.len() {
            frac_digits += 1;
        }
    }
    let exp10 = pow10 - frac_digits;
    let mut numerator = mantissa.checked_mul(factor)?;
    let mut denominator: i128 = 1;
    for _ in 0..exp10.max(0) {
        numerator = numerator.saturating_mul(10);
    }
    for _ in 0..(-exp10).max(0) {
        denominator = denominator.saturating_mul(10);
    }
    numerator = numerator.saturating_mul(1i128 << pow2);
    let value = if negative { -(numerator / denominator) } else { numerator / denominator + i128::from(numerator % denominator != 0) };
    Some(value.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
}

/// The canonical text of a quantity, as kube-apiserver stores and returns it (`1000m` → `1`,
/// `1000` → `1k`, `0.5Gi` → `512Mi`, `1.5Ki` → `1536`, `1E3` → `1e3`): the suffix family kept
/// (binary only for whole numbers of at least 1024), the largest exponent that leaves an
/// integer, precision below `1n` rounded up. `None` if malformed or beyond 38 digits.
pub fn canonical(text: &str) -> Option<String> {
    let (negative, number, suffix) = split(text)?;
    let (mut exp10, pow2) = suffix_exponents(suffix)?;
    let exponent_form = suffix.starts_with(['e', 'E']);
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits = format!("{whole}{frac}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 38 {
        return None;
    }
    let mut mantissa: i128 = if digits.is_empty() { 0 } else { digits.parse().ok()? };
    exp10 -= frac.len() as i32;
    mantissa = mantissa.checked_mul(1i128.checked_shl(pow2)?)?;
    if exp10 < -9 {
        // Below nano precision: rounded up to the next nano.
        let divisor = 10i128.checked_pow((-9 - exp10) as u32)?;
        mantissa = mantissa / divisor + i128::from(mantissa % divisor != 0);
        exp10 = -9;
    }
    while mantissa != 0 && mantissa % 10 == 0 {
        mantissa /= 10;
        exp10 += 1;
    }
    if mantissa == 0 {
        return Some("0".into());
    }
    let sign = if negative { "-" } else { "" };
    if pow2 > 0 && exp10 >= 0 {
        let whole = mantissa.checked_mul(10i128.checked_pow(exp10 as u32)?)?;
        if whole >= 1024 {
            let (mut n, mut unit) = (whole, 0);
            while n % 1024 == 0 && unit < 6 {
                n /= 1024;
                unit += 1;
            }
            return Some(format!("{sign}{n}{}", ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][unit]));
        }
    }
    // Decimal: the exponent a multiple of three, SI suffixes from n to E.
    let mut exponent = exp10.div_euclid(3) * 3;
    if !exponent_form {
        exponent = exponent.min(18);
    }
    mantissa = mantissa.checked_mul(10i128.checked_pow((exp10 - exponent) as u32)?)?;
    let suffix = match (exponent_form, exponent) {
        (_, 0) => String::new(),
        (true, e) => format!("e{e}"),
        (false, e) => ["n", "u", "m", "", "k", "M", "G", "T", "P", "E"][((e + 9) / 3) as usize].to_string(),
    };
    Some(format!("{sign}{mantissa}{suffix}"))
}

/// (power of ten, power of two) a quantity suffix stands for.
fn suffix_exponents(suffix: &str) -> Option<(i32, u32)> {
    Some(match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        exp if exp.starts_with(['e', 'E']) => (exp[1..].parse::<i32>().ok().filter(|e| e.abs() <= 40)?, 0),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity(s.into())
    }

    #[test]
    fn cpu_in_millicores() {
        assert_eq!(milli_value(&q("2")), Some(2000));
        assert_eq!(milli_value(&q("500m")), Some(500));
        assert_eq!(milli_value(&q("0.1")), Some(100));
        assert_eq!(milli_value(&q("1.5")), Some(1500));
        assert_eq!(milli_value(&q("100u")), Some(1), "rounded up");
        assert_eq!(milli_value(&q("1e3")), Some(1_000_000));
    }

    #[test]
    fn memory_in_bytes() {
        assert_eq!(value(&q("4Gi")), Some(4 << 30));
        assert_eq!(value(&q("128Mi")), Some(128 << 20));
        assert_eq!(value(&q("1k")), Some(1000));
        assert_eq!(value(&q("1.5Ki")), Some(1536));
        assert_eq!(value(&q("110")), Some(110));
        assert_eq!(value(&q("1m")), Some(1), "rounded up");
        assert_eq!(value(&q("-1")), Some(-1));
    }

    #[test]
    fn canonical_as_kube_apiserver_stores_them() {
        for (given, stored) in [
            ("2", "2"),
            ("1000m", "1"),
            ("1500m", "1500m"),
            ("0.5", "500m"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("128Mi", "128Mi"),
            ("2048Ki", "2Mi"),
            ("0.5Gi", "512Mi"),
            ("1.5Ki", "1536"),
            ("512Ki", "512Ki"),
            ("0.5Ki", "512"),
            ("1e3", "1e3"),
            ("1E3", "1e3"),
            ("1.5e3", "1500"),
            ("0", "0"),
            ("0Mi", "0"),
            ("0.1n", "1n"),
            ("-1", "-1"),
            ("1G", "1G"),
            ("1000M", "1G"),
            ("100u", "100u"),
            ("+5", "5"),
        ] {
            assert_eq!(canonical(given).as_deref(), Some(stored), "{given}");
        }
        for bad in ["", "abc", "1.2.3", "5Xi", ".", "1e", "1 Gi"] {
            assert_eq!(canonical(bad), None, "{bad}");
        }
    }

    #[test]
    fn malformed_and_huge() {
        for bad in ["", "abc", "1.2.3", "5Xi", ".", "1e"] {
            assert_eq!(value(&q(bad)), None, "{bad}");
        }
        assert_eq!(value(&q("99999999999999999999999E")), Some(i64::MAX));
    }
}
