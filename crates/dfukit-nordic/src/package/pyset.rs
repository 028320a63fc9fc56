//! CPython set iteration order, which decides the order nrfutil writes `sd_req` in.

/// Just enough of CPython 3.11's `setobject.c` to reproduce the iteration order of a set of
/// small non-negative ints (whose hash is the value itself).
#[derive(Clone)]
struct PySet {
    table: Vec<Option<u64>>,
    fill: usize,
    used: usize,
}

const LINEAR_PROBES: usize = 9;
const PERTURB_SHIFT: u32 = 5;

/// The slot `setobject.c` probes after a run of linear probes from `i`
/// (`perturb` brings in more of the hash each time), shared by adding a
/// key and re-inserting keys on a resize so both walk the same sequence.
fn next_probe(i: usize, perturb: &mut u64, mask: usize) -> usize {
    *perturb >>= PERTURB_SHIFT;
    (i.wrapping_mul(5)
        .wrapping_add(1)
        .wrapping_add(*perturb as usize))
        & mask
}

impl PySet {
    fn new() -> Self {
        PySet {
            table: vec![None; 8],
            fill: 0,
            used: 0,
        }
    }

    fn mask(&self) -> usize {
        self.table.len() - 1
    }

    fn from_iter(values: impl IntoIterator<Item = u64>) -> Self {
        let mut s = PySet::new();
        for v in values {
            s.add(v);
        }
        s
    }

    fn contains(&self, key: u64) -> bool {
        self.table.contains(&Some(key))
    }

    fn add(&mut self, key: u64) {
        let mask = self.mask();
        let mut perturb = key;
        let mut i = (key as usize) & mask;
        loop {
            let probes = if i + LINEAR_PROBES <= mask {
                LINEAR_PROBES
            } else {
                0
            };
            for j in 0..=probes {
                match self.table[i + j] {
                    None => {
                        self.table[i + j] = Some(key);
                        self.fill += 1;
                        self.used += 1;
                        if self.fill * 5 >= mask * 3 {
                            self.resize(if self.used > 50000 {
                                self.used * 2
                            } else {
                                self.used * 4
                            });
                        }
                        return;
                    }
                    Some(k) if k == key => return,
                    Some(_) => {}
                }
            }
            i = next_probe(i, &mut perturb, mask);
        }
    }

    fn resize(&mut self, minused: usize) {
        let mut newsize = 8;
        while newsize <= minused {
            newsize <<= 1;
        }
        let old = std::mem::replace(&mut self.table, vec![None; newsize]);
        for k in old.into_iter().flatten() {
            self.insert_clean(k);
        }
        self.fill = self.used;
    }

    fn insert_clean(&mut self, key: u64) {
        let mask = self.mask();
        let mut perturb = key;
        let mut i = (key as usize) & mask;
        loop {
            if self.table[i].is_none() {
                self.table[i] = Some(key);
                return;
            }
            if i + LINEAR_PROBES <= mask {
                for j in 1..=LINEAR_PROBES {
                    if self.table[i + j].is_none() {
                        self.table[i + j] = Some(key);
                        return;
                    }
                }
            }
            i = next_probe(i, &mut perturb, mask);
        }
    }

    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.table.iter().flatten().copied()
    }

    /// `self - other` (CPython `set_difference`).
    fn difference(&self, other: &PySet) -> Vec<u64> {
        if (self.used >> 2) > other.used {
            // set_copy_and_difference: copy (merge into an empty set), then discard.
            let mut copy = PySet::new();
            if (copy.fill + self.used) * 5 >= copy.mask() * 3 {
                copy.resize((copy.used + self.used) * 2);
            }
            if copy.table.len() == self.table.len() {
                copy.table.clone_from(&self.table);
            } else {
                for k in self.iter() {
                    copy.insert_clean(k);
                }
            }
            copy.iter().filter(|k| !other.contains(*k)).collect()
        } else {
            PySet::from_iter(self.iter().filter(|k| !other.contains(*k)))
                .iter()
                .collect()
        }
    }
}

/// The order nrfutil writes `sd_req` in: `list(set(values))` under CPython 3.11.
pub fn python_set_order(values: &[u32]) -> Vec<u32> {
    PySet::from_iter(values.iter().map(|&v| u64::from(v)))
        .iter()
        .map(|v| v as u32)
        .collect()
}

/// nrfutil's `sd_req_list += set(sd_id_list) - set(sd_req_list)`.
pub fn merge_sd_id(sd_req: &[u32], sd_id: &[u32]) -> Vec<u32> {
    let a = PySet::from_iter(sd_id.iter().map(|&v| u64::from(v)));
    let b = PySet::from_iter(sd_req.iter().map(|&v| u64::from(v)));
    let mut out = sd_req.to_vec();
    out.extend(a.difference(&b).into_iter().map(|v| v as u32));
    out
}
