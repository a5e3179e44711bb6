//! `meridian regions ...`

use clap::{Args, Subcommand};
use meridian_api::regions::RegionBody;
use meridian_client::Client;

use crate::output::{Output, Table};

/// Region subcommands.
#[derive(Subcommand)]
pub enum RegionsCommand {
    /// Add a region.
    Create(CreateRegion),
    /// List regions.
    List,
}

/// `meridian regions create`.
#[derive(Args)]
pub struct CreateRegion {
    /// Region name, a DNS label such as `eu-fra`.
    name: String,
    /// ISO 3166-1 alpha-2 country code, e.g. DE.
    #[arg(long, value_name = "CC")]
    country: String,
    /// Latitude in degrees north, -90 to 90.
    #[arg(long, value_name = "DEG", allow_negative_numbers = true, value_parser = latitude)]
    lat: f64,
    /// Longitude in degrees east, -180 to 180.
    #[arg(long, value_name = "DEG", allow_negative_numbers = true, value_parser = longitude)]
    lon: f64,
}

/// Runs a region subcommand.
pub async fn run(command: RegionsCommand, client: &Client, out: &Output) -> anyhow::Result<()> {
    match command {
        RegionsCommand::Create(args) => {
            let body = RegionBody {
                name: args.name,
                country: args.country,
                latitude: args.lat,
                longitude: args.lon,
            };
            let created = client.create_region(&body).await?;
            out.show(&created, || render_regions(std::slice::from_ref(&created)))
        }
        RegionsCommand::List => {
            let regions = client.regions().await?;
            out.show(&regions, || render_regions(&regions))
        }
    }
}

fn render_regions(regions: &[RegionBody]) -> String {
    let mut table = Table::new(&["NAME", "COUNTRY", "LAT", "LON"]);
    for r in regions {
        table.row(vec![
            r.name.clone(),
            r.country.clone(),
            r.latitude.to_string(),
            r.longitude.to_string(),
        ]);
    }
    table.render()
}

fn degrees(s: &str, limit: f64) -> Result<f64, String> {
    let value: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a number of degrees"))?;
    // `NaN` and `inf` parse as f64 but are no place on Earth.
    if !value.is_finite() || value.abs() > limit {
        return Err(format!("must be between -{limit} and {limit}"));
    }
    Ok(value)
}

fn latitude(s: &str) -> Result<f64, String> {
    degrees(s, 90.0)
}

fn longitude(s: &str) -> Result<f64, String> {
    degrees(s, 180.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinates_are_checked() {
        assert_eq!(latitude("-33.9"), Ok(-33.9));
        assert!(latitude("91").is_err());
        assert!(longitude("NaN").is_err());
        assert!(longitude("east").is_err());
        assert_eq!(longitude("180"), Ok(180.0));
    }
}
