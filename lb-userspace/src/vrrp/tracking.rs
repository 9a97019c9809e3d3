//! Tracked objects and what they do to the advertised priority, as in
//! keepalived: a positive weight is added while the object is healthy, a
//! negative weight while it has failed, and a failure of an object without
//! weight puts the instance in FAULT. Results arrive from the driver
//! (scripts, interfaces, processes, files); this is pure bookkeeping.

/// One observation of a tracked object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    Up,
    Down,
    /// A `track_file` value.
    Value(i64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracked {
    pub name: String,
    pub weight: i32,
    /// Consecutive results needed to change state (scripts; 1 otherwise).
    pub rise: u32,
    pub fall: u32,
    /// `None` until the first observation: no effect yet.
    healthy: Option<bool>,
    /// A `track_file`: its value, not up/down, decides.
    is_value: bool,
    value: i64,
    streak: u32,
}

impl Tracked {
    pub fn new(name: impl Into<String>, weight: i32, rise: u32, fall: u32) -> Self {
        Tracked {
            name: name.into(),
            weight,
            rise: rise.max(1),
            fall: fall.max(1),
            healthy: None,
            is_value: false,
            value: 0,
            streak: 0,
        }
    }

    /// A `track_file` entry: `weight × value` is added; a non-zero value
    /// without weight means FAULT.
    pub fn file(name: impl Into<String>, weight: i32) -> Self {
        Tracked {
            is_value: true,
            ..Tracked::new(name, weight, 1, 1)
        }
    }

    pub fn healthy(&self) -> Option<bool> {
        self.healthy
    }

    /// Records one observation; true when the object's effect changed.
    pub fn observe(&mut self, observation: Observation) -> bool {
        let before = self.effect();
        match observation {
            Observation::Value(v) => self.value = v,
            Observation::Up | Observation::Down => {
                let up = observation == Observation::Up;
                match self.healthy {
                    // The first result decides at once.
                    None => {
                        self.healthy = Some(up);
                        self.streak = 0;
                    }
                    Some(current) if current == up => self.streak = 0,
                    Some(_) => {
                        self.streak += 1;
                        let needed = if up { self.rise } else { self.fall };
                        if self.streak >= needed {
                            self.healthy = Some(up);
                            self.streak = 0;
                        }
                    }
                }
            }
        }
        before != self.effect()
    }

    /// (priority adjustment, fault).
    fn effect(&self) -> (i32, bool) {
        if self.is_value {
            // track_file: weight × value, or FAULT for a non-zero value
            // without weight.
            return match (self.weight, self.value) {
                (_, 0) => (0, false),
                (0, _) => (0, true),
                (w, v) => (w.saturating_mul(v.clamp(-254, 254) as i32), false),
            };
        }
        match (self.healthy, self.weight) {
            (None, _) => (0, false),
            (Some(false), 0) => (0, true),
            (Some(true), w) if w > 0 => (w, false),
            (Some(false), w) if w < 0 => (w, false),
            _ => (0, false),
        }
    }
}

/// The sum over all tracked objects: (priority adjustment, fault).
pub fn priority_effect(tracked: &[Tracked]) -> (i32, bool) {
    tracked.iter().fold((0, false), |(sum, fault), t| {
        let (adjust, f) = t.effect();
        (sum.saturating_add(adjust), fault || f)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fall_and_rise_need_consecutive_results() {
        let mut t = Tracked::new("chk", -20, 2, 3);
        assert!(
            t.observe(Observation::Down),
            "the first result decides at once"
        );
        assert_eq!(priority_effect(std::slice::from_ref(&t)), (-20, false));
        assert!(!t.observe(Observation::Up));
        assert!(!t.observe(Observation::Down), "the streak is broken");
        assert!(!t.observe(Observation::Up));
        assert!(t.observe(Observation::Up), "two in a row: up");
        assert_eq!(priority_effect(&[t.clone()]), (0, false));
        assert!(!t.observe(Observation::Down));
        assert!(!t.observe(Observation::Down));
        assert!(t.observe(Observation::Down), "three in a row: down");
        assert_eq!(t.healthy(), Some(false));
    }

    #[test]
    fn weights_follow_keepalived() {
        let mut plus = Tracked::new("plus", 10, 1, 1);
        let mut minus = Tracked::new("minus", -30, 1, 1);
        let mut none = Tracked::new("none", 0, 1, 1);
        assert_eq!(
            priority_effect(&[plus.clone(), minus.clone(), none.clone()]),
            (0, false),
            "no result yet"
        );
        plus.observe(Observation::Up);
        minus.observe(Observation::Up);
        none.observe(Observation::Up);
        assert_eq!(
            priority_effect(&[plus.clone(), minus.clone(), none.clone()]),
            (10, false)
        );
        plus.observe(Observation::Down);
        minus.observe(Observation::Down);
        assert_eq!(
            priority_effect(&[plus.clone(), minus.clone(), none.clone()]),
            (-30, false)
        );
        none.observe(Observation::Down);
        assert_eq!(priority_effect(&[plus, minus, none]), (-30, true));
    }

    #[test]
    fn file_values_multiply_the_weight() {
        let mut file = Tracked::file("/run/app", 5);
        assert!(file.observe(Observation::Value(-4)));
        assert_eq!(priority_effect(&[file.clone()]), (-20, false));
        assert!(file.observe(Observation::Value(0)));
        assert_eq!(priority_effect(&[file.clone()]), (0, false));
        let mut fault = Tracked::file("/run/app", 0);
        fault.observe(Observation::Value(1));
        assert_eq!(priority_effect(&[fault]), (0, true));
    }
}
