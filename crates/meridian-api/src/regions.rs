//! Regions on the wire.

use meridian_core::{CountryCode, Name, Region, ValidationError};
use serde::{Deserialize, Serialize};

/// `POST /v1/regions` body, and what `GET` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegionBody {
    /// DNS-label name, e.g. `eu-fra`.
    pub name: String,
    /// ISO 3166-1 alpha-2 code.
    pub country: String,
    /// Degrees north.
    pub latitude: f64,
    /// Degrees east.
    pub longitude: f64,
}

/// `PATCH /v1/regions/{name}` body: fields present are replaced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegionPatch {
    /// New country.
    #[serde(default)]
    pub country: Option<String>,
    /// New latitude.
    #[serde(default)]
    pub latitude: Option<f64>,
    /// New longitude.
    #[serde(default)]
    pub longitude: Option<f64>,
}

impl RegionBody {
    /// Checks every field.
    pub fn into_region(self) -> Result<Region, ValidationError> {
        let region = Region {
            name: Name::parse_field("name", &self.name)?,
            country: CountryCode::parse(&self.country)
                .map_err(|p| ValidationError::new("country", p))?,
            latitude: self.latitude,
            longitude: self.longitude,
        };
        region.validate()?;
        Ok(region)
    }
}

impl From<&Region> for RegionBody {
    fn from(r: &Region) -> Self {
        Self {
            name: r.name.to_string(),
            country: r.country.to_string(),
            latitude: r.latitude,
            longitude: r.longitude,
        }
    }
}

impl RegionPatch {
    /// Applies the patch to `region` and checks the result.
    pub fn apply_to(self, mut region: Region) -> Result<Region, ValidationError> {
        if let Some(c) = self.country {
            region.country =
                CountryCode::parse(&c).map_err(|p| ValidationError::new("country", p))?;
        }
        if let Some(v) = self.latitude {
            region.latitude = v;
        }
        if let Some(v) = self.longitude {
            region.longitude = v;
        }
        region.validate()?;
        Ok(region)
    }
}
