//! The set of memberships an object record was counted in ([`super::ObjectRecord::counted_in`]).

use smallvec::SmallVec;

/// A small sorted set of membership tokens (`FAILED:<code>#<rule>`, `LATE#<rule>`, ...). An
/// object is counted in one or two incidents: kept inline, sorted, without the tree node a
/// `BTreeSet` allocates for every record of a storm.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memberships(SmallVec<[String; 1]>);

impl Memberships {
    /// Add a token; `false` if it was there.
    pub fn insert(&mut self, token: String) -> bool {
        match self.0.binary_search(&token) {
            Ok(_) => false,
            Err(at) => {
                self.0.insert(at, token);
                true
            }
        }
    }

    pub fn contains(&self, token: &str) -> bool {
        self.0.binary_search_by(|t| t.as_str().cmp(token)).is_ok()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// In order.
    pub fn iter(&self) -> impl Iterator<Item = &String> {
        self.0.iter()
    }
}

impl FromIterator<String> for Memberships {
    fn from_iter<I: IntoIterator<Item = String>>(tokens: I) -> Self {
        let mut set = Memberships::default();
        for token in tokens {
            set.insert(token);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sorted_set_whatever_the_order_of_insertion() {
        let a: Memberships = ["LATE#r", "FAILED:X#r", "LATE#r"]
            .into_iter()
            .map(String::from)
            .collect();
        let b: Memberships = ["FAILED:X#r", "LATE#r"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(a, b);
        assert_eq!(a.len(), 2);
        assert!(a.contains("LATE#r") && !a.contains("LATE#s"));
        assert_eq!(
            a.iter().map(String::as_str).collect::<Vec<_>>(),
            ["FAILED:X#r", "LATE#r"]
        );
    }
}
