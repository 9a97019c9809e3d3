//! Small value writers the section translators share: durations,
//! string lists, timeout pairs.
use super::*;

/// A HAProxy duration as lbd writes it: a bare number (milliseconds) or a
/// string with its unit.
pub(super) fn duration(text: &str) -> Value {
    match text.parse::<i64>() {
        Ok(ms) => Value::Int(ms),
        Err(_) => Value::str(text),
    }
}

/// Seconds of a HAProxy duration (for XDP health checks).
pub(super) fn duration_seconds(text: &str) -> Option<f64> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match unit {
        "" | "ms" => 0.001,
        "us" => 0.000_001,
        "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        _ => return None,
    };
    Some(number * factor)
}

pub(super) fn push_str(table: &mut Table, key: &str, value: String, comment: Option<String>) {
    let mut list = match table.get(key) {
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    };
    list.push(Value::Str(value));
    table.set(key, Value::Array(list), comment);
}

pub(super) fn set_timeout(table: &mut Table, key: &str, value: Value) {
    let mut pairs = match table.get("timeout") {
        Some(Value::Inline(pairs)) => pairs.clone(),
        _ => Vec::new(),
    };
    pairs.retain(|(k, _)| k != key);
    pairs.push((key.to_string(), value));
    table.set("timeout", Value::Inline(pairs), None);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_seconds() {
        assert_eq!(duration_seconds("2s"), Some(2.0));
        assert_eq!(duration_seconds("500"), Some(0.5));
        assert_eq!(duration_seconds("1m"), Some(60.0));
        assert_eq!(duration_seconds("x"), None);
    }
}
