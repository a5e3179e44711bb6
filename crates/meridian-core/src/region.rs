//! Regions: named places with a country and coordinates.

use serde::{Deserialize, Serialize};

use crate::country::CountryCode;
use crate::error::{Problem, ValidationError};
use crate::name::Name;

/// A region: where worker nodes run. Its country decides which jurisdictions it lies in; its
/// coordinates decide how near it is to a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Region {
    /// DNS-label name, e.g. `eu-fra`.
    pub name: Name,
    /// The country the region's machines stand in.
    pub country: CountryCode,
    /// Degrees north, -90 to 90.
    pub latitude: f64,
    /// Degrees east, -180 to 180.
    pub longitude: f64,
}

impl Region {
    /// Checks the coordinates (name and country are checked by their types).
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_range("latitude", self.latitude, 90.0)?;
        check_range("longitude", self.longitude, 180.0)
    }
}

fn check_range(field: &str, v: f64, limit: f64) -> Result<(), ValidationError> {
    if v.is_finite() && (-limit..=limit).contains(&v) {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            Problem::OutOfRange {
                value: v.to_string(),
                min: (-limit).to_string(),
                max: limit.to_string(),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(lat: f64, lon: f64) -> Region {
        Region {
            name: Name::parse("eu-fra").unwrap(),
            country: CountryCode::parse("DE").unwrap(),
            latitude: lat,
            longitude: lon,
        }
    }

    #[test]
    fn coordinates_must_be_on_earth() {
        assert!(region(50.1, 8.7).validate().is_ok());
        assert!(region(-90.0, 180.0).validate().is_ok());
        for (lat, lon) in [
            (91.0, 0.0),
            (0.0, -180.5),
            (f64::NAN, 0.0),
            (0.0, f64::INFINITY),
        ] {
            assert!(region(lat, lon).validate().is_err(), "{lat},{lon}");
        }
    }
}
