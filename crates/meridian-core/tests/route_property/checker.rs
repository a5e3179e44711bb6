//! The independent checker of the routing rules: it knows jurisdictions, distances and round
//! trips only from the test's own tables, never from `route.rs`.

use std::cmp::Ordering;

use meridian_core::route::RouteReason;

use super::*;

/// How regions are compared for "nearer".
enum Measure {
    /// Great-circle distance from the client.
    Distance,
    /// Round trip from `home`, the region nearest the client.
    Rtt { home: &'static str },
    /// The nearest region is a tie the checker cannot break, so which measure applies is
    /// unknown: only the rules that hold either way are checked.
    Unknown,
}

/// What the checker learnt, for the coverage line.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Seen {
    pub(super) nearest: u64,
    pub(super) nearest_rtt: u64,
    pub(super) residency: u64,
    pub(super) origin_bound: u64,
    pub(super) no_healthy: u64,
    pub(super) refused_origin_bound: u64,
    /// Origin-bound refusals of a client held by several jurisdictions at once.
    pub(super) refused_held_by_several: u64,
    pub(super) ties_by_name: u64,
    pub(super) undecidable: u64,
}

impl Seen {
    pub(super) fn add(&mut self, o: &Seen) {
        self.nearest += o.nearest;
        self.nearest_rtt += o.nearest_rtt;
        self.residency += o.residency;
        self.origin_bound += o.origin_bound;
        self.no_healthy += o.no_healthy;
        self.refused_origin_bound += o.refused_origin_bound;
        self.refused_held_by_several += o.refused_held_by_several;
        self.ties_by_name += o.ties_by_name;
        self.undecidable += o.undecidable;
    }
}

pub(super) struct Checker<'c> {
    pub(super) case: &'c Case,
}

impl<'c> Checker<'c> {
    fn client_country(&self) -> &'static str {
        self.case.client.0
    }

    fn distance(&self, r: &Region) -> f64 {
        haversine_km(self.case.client.1, r.2)
    }

    fn allowed(&self, country: &str) -> bool {
        self.case.residency.is_empty() || self.case.residency.iter().any(|j| holds(j, country))
    }

    /// The origin-bound jurisdictions that hold the client, in the app's order.
    pub(super) fn binding(&self) -> Vec<&'static str> {
        self.case
            .origin_bound
            .iter()
            .copied()
            .filter(|j| holds(j, self.client_country()))
            .collect()
    }

    /// Healthy and allowed by residency.
    fn servable(&self, r: &Region) -> bool {
        r.3 > 0 && self.allowed(r.1)
    }

    pub(super) fn qualifies(&self, r: &Region) -> bool {
        self.servable(r) && self.binding().iter().all(|j| holds(j, r.1))
    }

    fn rtt(&self, a: &str, b: &str) -> Option<f64> {
        if a == b {
            return Some(0.0);
        }
        self.case
            .rtt
            .iter()
            .find(|(x, y, _)| (*x == a && *y == b) || (*x == b && *y == a))
            .map(|t| t.2)
    }

    /// Distance order, names breaking exact ties; `None` when two different places are
    /// within rounding of each other.
    fn by_distance(&self, a: &Region, b: &Region) -> Option<Ordering> {
        if a.2 == b.2 {
            return Some(a.0.cmp(b.0));
        }
        let (da, db) = (self.distance(a), self.distance(b));
        if (da - db).abs() <= tolerance(da.max(db)) {
            None
        } else {
            da.partial_cmp(&db)
        }
    }

    fn measure(&self) -> Measure {
        if self.case.rtt.is_empty() {
            return Measure::Distance;
        }
        let regions = &self.case.regions;
        let home = regions
            .iter()
            .min_by(|a, b| {
                self.distance(a)
                    .total_cmp(&self.distance(b))
                    .then(a.0.cmp(b.0))
            })
            .expect("every case has a region");
        // Another place within rounding of the nearest: which one `decide` took as home is
        // not decidable here.
        if regions
            .iter()
            .any(|r| r.0 != home.0 && self.by_distance(r, home).is_none())
        {
            return Measure::Unknown;
        }
        let covered = regions
            .iter()
            .filter(|r| r.3 > 0)
            .all(|r| self.rtt(home.0, r.0).is_some());
        if covered {
            Measure::Rtt { home: home.0 }
        } else {
            Measure::Distance
        }
    }

    /// Whether `a` comes before `b` under the measure; `None` when undecidable.
    fn before(&self, measure: &Measure, a: &Region, b: &Region) -> Option<bool> {
        match measure {
            Measure::Distance => self.by_distance(a, b).map(|o| o == Ordering::Less),
            Measure::Rtt { home } => {
                let (ra, rb) = (self.rtt(home, a.0)?, self.rtt(home, b.0)?);
                Some(ra.total_cmp(&rb).then(a.0.cmp(b.0)) == Ordering::Less)
            }
            Measure::Unknown => None,
        }
    }

    /// Whether any region passing `filter` comes before `winner`; `None` when undecidable.
    fn any_before(
        &self,
        measure: &Measure,
        winner: &Region,
        filter: impl Fn(&Region) -> bool,
    ) -> Option<bool> {
        let mut unknown = false;
        for r in self
            .case
            .regions
            .iter()
            .filter(|r| r.0 != winner.0 && filter(r))
        {
            match self.before(measure, r, winner) {
                Some(true) => return Some(true),
                Some(false) => {}
                None => unknown = true,
            }
        }
        (!unknown).then_some(false)
    }

    pub(super) fn check(
        &self,
        got: &Result<Route, NoRoute>,
        seen: &mut Seen,
    ) -> Result<(), String> {
        let qualifying: Vec<&Region> = self
            .case
            .regions
            .iter()
            .filter(|r| self.qualifies(r))
            .collect();
        let route = match got {
            Err(e) => return self.check_refusal(e, &qualifying, seen),
            Ok(route) => route,
        };
        let Some(winner) = self
            .case
            .regions
            .iter()
            .find(|r| r.0 == route.region.as_str())
        else {
            return Err(format!(
                "routed to {}, which is no region of the app",
                route.region
            ));
        };
        if winner.3 == 0 {
            return Err(format!(
                "routed to {}, which has no healthy instance",
                winner.0
            ));
        }
        if !self.allowed(winner.1) {
            return Err(format!(
                "routed to {} in {}, outside the residency",
                winner.0, winner.1
            ));
        }
        if let Some(j) = self.binding().into_iter().find(|j| !holds(j, winner.1)) {
            return Err(format!(
                "routed a client in {} to {} in {}, outside origin-bound {j}",
                self.client_country(),
                winner.0,
                winner.1
            ));
        }
        let d = self.distance(winner);
        if (route.distance_km - d).abs() > tolerance(d) {
            return Err(format!(
                "distance_km {} but the distance is {d}",
                route.distance_km
            ));
        }

        let measure = self.measure();
        match &measure {
            Measure::Distance => {
                if let Some(r) = qualifying
                    .iter()
                    .find(|r| self.before(&measure, r, winner) == Some(true))
                {
                    return Err(format!(
                        "routed to {} at {d} km, but {} qualifies at {} km",
                        winner.0,
                        r.0,
                        self.distance(r)
                    ));
                }
                if route.rtt_ms.is_some() {
                    return Err("rtt_ms given although distance decided".into());
                }
            }
            Measure::Rtt { home } => {
                if let Some(r) = qualifying
                    .iter()
                    .find(|r| self.before(&measure, r, winner) == Some(true))
                {
                    return Err(format!(
                        "routed to {} at {:?} ms from {home}, but {} qualifies at {:?} ms",
                        winner.0,
                        self.rtt(home, winner.0),
                        r.0,
                        self.rtt(home, r.0)
                    ));
                }
                if route.rtt_ms != self.rtt(home, winner.0) {
                    return Err(format!(
                        "rtt_ms {:?}, but {home} to {} measures {:?}",
                        route.rtt_ms,
                        winner.0,
                        self.rtt(home, winner.0)
                    ));
                }
            }
            Measure::Unknown => {}
        }
        if qualifying
            .iter()
            .any(|r| r.0 != winner.0 && (r.2 == winner.2 || self.rtt_tie(&measure, r, winner)))
        {
            seen.ties_by_name += 1;
        }
        self.check_reason(route, winner, &measure, seen)
    }

    fn rtt_tie(&self, measure: &Measure, a: &Region, b: &Region) -> bool {
        matches!(measure, Measure::Rtt { home } if self.rtt(home, a.0) == self.rtt(home, b.0))
    }

    /// Why the winner won: a nearer servable region means origin-bound rules removed it; a
    /// nearer healthy one means residency did; else it is simply the nearest.
    fn check_reason(
        &self,
        route: &Route,
        winner: &Region,
        measure: &Measure,
        seen: &mut Seen,
    ) -> Result<(), String> {
        let (Some(servable_before), Some(healthy_before)) = (
            self.any_before(measure, winner, |r| self.servable(r)),
            self.any_before(measure, winner, |r| r.3 > 0),
        ) else {
            seen.undecidable += 1;
            return Ok(());
        };
        match &route.reason {
            RouteReason::OriginBound(j) if servable_before => {
                let j = j.to_string();
                if !self.binding().contains(&j.as_str()) {
                    return Err(format!(
                        "reason origin-bound {j}, which does not hold the client's {}",
                        self.client_country()
                    ));
                }
                // A region within rounding of the winner may be the one `decide` found nearer.
                let kept_out = self.case.regions.iter().any(|r| {
                    self.servable(r)
                        && !holds(&j, r.1)
                        && self.before(measure, r, winner) != Some(false)
                });
                if !kept_out {
                    return Err(format!(
                        "reason origin-bound {j}, but no nearer servable region lies outside it"
                    ));
                }
                seen.origin_bound += 1;
            }
            RouteReason::Residency if !servable_before && healthy_before => seen.residency += 1,
            RouteReason::Nearest if !healthy_before && !matches!(measure, Measure::Rtt { .. }) => {
                seen.nearest += 1
            }
            RouteReason::NearestByRtt
                if !healthy_before && !matches!(measure, Measure::Distance) =>
            {
                seen.nearest_rtt += 1
            }
            other => {
                return Err(format!(
                    "reason {other:?}, but a nearer servable region {} and a nearer healthy \
                     one {}",
                    if servable_before {
                        "exists"
                    } else {
                        "does not exist"
                    },
                    if healthy_before {
                        "exists"
                    } else {
                        "does not exist"
                    },
                ))
            }
        }
        Ok(())
    }

    fn check_refusal(
        &self,
        e: &NoRoute,
        qualifying: &[&Region],
        seen: &mut Seen,
    ) -> Result<(), String> {
        if let Some(r) = qualifying.first() {
            return Err(format!("refused ({e}) although {} qualifies", r.0));
        }
        let servable: Vec<&Region> = self
            .case
            .regions
            .iter()
            .filter(|r| self.servable(r))
            .collect();
        match e {
            NoRoute::NoHealthyInstance { residency } => {
                if !servable.is_empty() {
                    return Err(format!(
                        "no_healthy_instance, but {} is healthy and allowed",
                        servable[0].0
                    ));
                }
                let text = if self.case.residency.is_empty() {
                    "anywhere".to_string()
                } else {
                    self.case.residency.join(", ")
                };
                if *residency != text {
                    return Err(format!("residency given as {residency:?}, not {text:?}"));
                }
                seen.no_healthy += 1;
            }
            NoRoute::OriginBound {
                jurisdictions,
                country,
            } => {
                if servable.is_empty() {
                    return Err("origin_bound, but no healthy region is allowed at all".into());
                }
                if country.as_str() != self.client_country() {
                    return Err(format!(
                        "origin_bound names country {country}, not the client's {}",
                        self.client_country()
                    ));
                }
                let named: Vec<String> = jurisdictions.iter().map(ToString::to_string).collect();
                if named != self.binding() {
                    return Err(format!(
                        "origin_bound names {named:?}, not every origin-bound jurisdiction \
                         holding {}: {:?}",
                        self.client_country(),
                        self.binding()
                    ));
                }
                seen.refused_origin_bound += 1;
                if jurisdictions.len() > 1 {
                    seen.refused_held_by_several += 1;
                }
            }
        }
        Ok(())
    }
}
