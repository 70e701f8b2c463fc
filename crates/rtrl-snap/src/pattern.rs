//! Which influence entries SnAp-n keeps.
//!
//! Every core parameter `M[k, c]` (a kept entry of an input or recurrent
//! matrix, or bias entry `b[c]`) feeds the pre-activation of one hidden
//! unit, its *target unit* `c`. The recurrent matrices define the *unit
//! graph*: an edge `k → c` whenever some recurrent matrix keeps entry
//! `(k, c)`, because then `h_k` at one step moves unit `c` at the next.
//! SnAp-n keeps the influence of a parameter on the units reachable from
//! its target unit in at most `n − 1` edges: the units that parameter can
//! have moved within `n` steps. For an LSTM both rows of such a unit are
//! kept (`h` and `c`).

use std::collections::VecDeque;

use rtrl_core::error::check_size;
use rtrl_core::{CellShape, Error, ParamLayout, Result, MASKED};

/// The SnAp-n sparsity pattern of an influence matrix.
///
/// Parameters are numbered in kept-parameter order (the columns of
/// [`rtrl_core::Rtrl::influence`]), state rows as in the cell's state
/// (`h` rows `0..n`, then the LSTM's `c` rows `n..2n`).
///
/// All parameters with the same target unit `c` share one set of pattern
/// units, [`units_of(c)`](SnapPattern::units_of), which always contains
/// `c` itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapPattern {
    level: usize,
    hidden: usize,
    components: usize,
    units: Vec<Vec<usize>>,
    params: Vec<Vec<usize>>,
    target: Vec<usize>,
}

impl SnapPattern {
    /// The SnAp-`level` pattern of the core parameters of `layout`, for a
    /// cell of shape `shape`.
    ///
    /// # Errors
    /// [`Error::ZeroSize`] when `level` or `shape.hidden` is 0;
    /// [`Error::Shape`] when the state is not one or two copies of the
    /// hidden units, when a core block does not have one column per hidden
    /// unit, or when the unit graph has another number of units.
    pub fn new(layout: &ParamLayout, shape: CellShape, level: usize) -> Result<Self> {
        check_size("SnAp level", level)?;
        check_size("hidden size", shape.hidden)?;
        let n = shape.hidden;
        if shape.state != n && shape.state != 2 * n {
            return Err(Error::Shape {
                what: "state length".into(),
                expected: format!("{n} or {}", 2 * n),
                got: shape.state.to_string(),
            });
        }

        // The unit graph; a layout without recurrent blocks has no edges.
        let mut graph = layout.unit_graph();
        if graph.is_empty() {
            graph = vec![Vec::new(); n];
        }
        if graph.len() != n {
            return Err(Error::Shape {
                what: "unit graph".into(),
                expected: format!("{n} units"),
                got: graph.len().to_string(),
            });
        }

        // Target unit of every parameter: the column of its entry.
        let column_of = layout.column_of();
        let mut target = vec![usize::MAX; layout.num_core_params()];
        for block in layout.core_blocks() {
            if block.cols != n {
                return Err(Error::Shape {
                    what: format!("columns of core block {}", block.name),
                    expected: n.to_string(),
                    got: block.cols.to_string(),
                });
            }
            for row in 0..block.rows {
                for col in 0..block.cols {
                    let p = column_of[block.offset + row * block.cols + col];
                    if p != MASKED {
                        target[p as usize] = col;
                    }
                }
            }
        }
        let mut params = vec![Vec::new(); n];
        for (p, &c) in target.iter().enumerate() {
            params[c].push(p);
        }

        // Pattern units: breadth-first search to depth level − 1 (a path
        // never needs more than n − 1 edges).
        let depth = (level - 1).min(n);
        let units = (0..n).map(|c| reachable(&graph, c, depth)).collect();

        Ok(SnapPattern {
            level,
            hidden: n,
            components: shape.state / n,
            units,
            params,
            target,
        })
    }

    /// The level `n` of SnAp-n.
    pub fn level(&self) -> usize {
        self.level
    }

    /// Hidden units.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// State components per unit: 1 (`h`), or 2 for an LSTM (`h`, `c`).
    pub fn components(&self) -> usize {
        self.components
    }

    /// Number of core parameters `P`.
    pub fn num_params(&self) -> usize {
        self.target.len()
    }

    /// The units kept for the parameters whose target unit is `unit`,
    /// ascending; `unit` itself is always among them.
    ///
    /// # Panics
    /// If `unit` is not below [`hidden`](Self::hidden).
    pub fn units_of(&self, unit: usize) -> &[usize] {
        &self.units[unit]
    }

    /// The parameters (kept-parameter order, ascending) whose target unit
    /// is `unit`.
    ///
    /// # Panics
    /// If `unit` is not below [`hidden`](Self::hidden).
    pub fn params_of(&self, unit: usize) -> &[usize] {
        &self.params[unit]
    }

    /// The target unit of parameter `param`.
    ///
    /// # Panics
    /// If `param` is not below [`num_params`](Self::num_params).
    pub fn target_of(&self, param: usize) -> usize {
        self.target[param]
    }

    /// Whether influence entry `J[state_row, param_column]` is kept.
    ///
    /// # Panics
    /// If `param_column` is not below [`num_params`](Self::num_params).
    pub fn is_kept(&self, param_column: usize, state_row: usize) -> bool {
        let units = &self.units[self.target[param_column]];
        state_row < self.hidden * self.components
            && units.binary_search(&(state_row % self.hidden)).is_ok()
    }

    /// Kept entries of `J^h`: `Σ_p |units_of(target(p))|`, the count the
    /// thesis tables report (`P` for SnAp-1).
    pub fn entries(&self) -> usize {
        self.units.iter().zip(&self.params).map(|(u, p)| u.len() * p.len()).sum()
    }

    /// Kept entries of the whole of `J` (`J^h`, and `J^c` for an LSTM):
    /// what is really stored.
    pub fn stored_entries(&self) -> usize {
        self.entries() * self.components
    }
}

/// Units reachable from `start` in at most `depth` edges, ascending.
fn reachable(graph: &[Vec<usize>], start: usize, depth: usize) -> Vec<usize> {
    let mut distance = vec![usize::MAX; graph.len()];
    let mut queue = VecDeque::from([start]);
    distance[start] = 0;
    while let Some(unit) = queue.pop_front() {
        if distance[unit] == depth {
            continue;
        }
        for &next in &graph[unit] {
            if distance[next] == usize::MAX {
                distance[next] = distance[unit] + 1;
                queue.push_back(next);
            }
        }
    }
    (0..graph.len()).filter(|&u| distance[u] != usize::MAX).collect()
}

/// Kept entries of `J^h` for SnAp-`level` on `layout`, without building
/// an estimator: the number the thesis tables compare.
///
/// # Errors
/// As [`SnapPattern::new`].
pub fn jacobian_entries(
    layout: &ParamLayout,
    shape: CellShape,
    level: usize,
) -> Result<usize> {
    Ok(SnapPattern::new(layout, shape, level)?.entries())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reachability_respects_depth() {
        // A chain 0 → 1 → 2 → 3 and a loop back 3 → 0.
        let graph = vec![vec![1], vec![2], vec![3], vec![0]];
        assert_eq!(reachable(&graph, 0, 0), vec![0]);
        assert_eq!(reachable(&graph, 0, 1), vec![0, 1]);
        assert_eq!(reachable(&graph, 2, 2), vec![0, 2, 3]);
        assert_eq!(reachable(&graph, 1, 10), vec![0, 1, 2, 3]);
    }
}
