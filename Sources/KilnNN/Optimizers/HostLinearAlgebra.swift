import Foundation

/// Dense symmetric-matrix routines in Float64 on the host, for the second-order optimizers
/// (Shampoo, K-FAC, natural gradient, Newton). Matrices are row-major `[Double]` of n·n values.
///
/// These run on the CPU whatever the tensors' backend: the matrices are downloaded, factored in
/// Float64 and the results uploaded as Float32. Costs: Cholesky n³/3 multiply-adds; the cyclic
/// Jacobi eigensolver about 6–10 sweeps of 3n³ each, so n ≈ 500 takes about a second and the
/// optimizers that use it are meant for factors of at most a few hundred (Shampoo) or a few
/// thousand (Cholesky) rows.
enum HostLinearAlgebra {
    /// The lower Cholesky factor L (row-major, zeros above the diagonal) of the symmetric matrix
    /// `a` with a = L·Lᵀ, or nil when `a` is not positive definite (a pivot ≤ 0 or not finite).
    static func cholesky(_ a: [Double], n: Int) -> [Double]? {
        var l = [Double](repeating: 0, count: n * n)
        for j in 0..<n {
            var pivot = a[j * n + j]
            for k in 0..<j { pivot -= l[j * n + k] * l[j * n + k] }
            guard pivot > 0, pivot.isFinite else { return nil }
            let ljj = pivot.squareRoot()
            l[j * n + j] = ljj
            for i in (j + 1)..<n {
                var s = a[i * n + j]
                for k in 0..<j { s -= l[i * n + k] * l[j * n + k] }
                l[i * n + j] = s / ljj
            }
        }
        return l
    }

    /// Solves L·Lᵀ·X = B for X, with B row-major n × `columns` (a vector when `columns` is 1).
    static func choleskySolve(_ l: [Double], n: Int, _ b: [Double], columns: Int = 1) -> [Double] {
        var x = b
        for c in 0..<columns {
            // Forward substitution L·y = b, then back substitution Lᵀ·x = y.
            for i in 0..<n {
                var s = x[i * columns + c]
                for k in 0..<i { s -= l[i * n + k] * x[k * columns + c] }
                x[i * columns + c] = s / l[i * n + i]
            }
            for i in stride(from: n - 1, through: 0, by: -1) {
                var s = x[i * columns + c]
                for k in (i + 1)..<n { s -= l[k * n + i] * x[k * columns + c] }
                x[i * columns + c] = s / l[i * n + i]
            }
        }
        return x
    }

    /// The inverse of a symmetric positive-definite matrix by Cholesky, or nil when it is not
    /// positive definite. The result is symmetrised.
    static func inverse(ofPositiveDefinite a: [Double], n: Int) -> [Double]? {
        guard let l = cholesky(a, n: n) else { return nil }
        var identity = [Double](repeating: 0, count: n * n)
        for i in 0..<n { identity[i * n + i] = 1 }
        return symmetrised(choleskySolve(l, n: n, identity, columns: n), n: n)
    }

    /// (a + aᵀ)/2.
    static func symmetrised(_ a: [Double], n: Int) -> [Double] {
        var s = a
        for i in 0..<n {
            for j in 0..<i {
                let m = 0.5 * (a[i * n + j] + a[j * n + i])
                s[i * n + j] = m
                s[j * n + i] = m
            }
        }
        return s
    }

    /// Eigenvalues and eigenvectors of the symmetric matrix `a` by the cyclic Jacobi method
    /// (Golub & Van Loan §8.5): rotations zero each off-diagonal entry in turn until the
    /// off-diagonal Frobenius norm is below 1e-15 of the whole (at most 100 sweeps).
    /// - Returns: the eigenvalues (unsorted) and the eigenvectors as the columns of a row-major
    ///   n × n matrix V, with a = V·diag(values)·Vᵀ.
    static func symmetricEigen(_ input: [Double], n: Int) -> (values: [Double], vectors: [Double]) {
        var a = symmetrised(input, n: n)
        var v = [Double](repeating: 0, count: n * n)
        for i in 0..<n { v[i * n + i] = 1 }
        let total = a.reduce(0) { $0 + $1 * $1 }
        for _ in 0..<100 {
            var off = 0.0
            for p in 0..<n { for q in (p + 1)..<n { off += 2 * a[p * n + q] * a[p * n + q] } }
            if off <= 1e-30 * total || off == 0 { break }
            for p in 0..<n {
                for q in (p + 1)..<n {
                    let apq = a[p * n + q]
                    if apq == 0 { continue }
                    // tan φ of the rotation that zeroes a[p, q]: the smaller root of t² + 2θt − 1 = 0.
                    let theta = (a[q * n + q] - a[p * n + p]) / (2 * apq)
                    let t = (theta >= 0 ? 1.0 : -1.0) / (Swift.abs(theta) + (theta * theta + 1).squareRoot())
                    let c = 1 / (t * t + 1).squareRoot(), s = t * c
                    // a ← Jᵀ·a·J with J = I except J[p,p] = J[q,q] = c, J[p,q] = s, J[q,p] = −s.
                    for k in 0..<n {
                        let akp = a[k * n + p], akq = a[k * n + q]
                        a[k * n + p] = c * akp - s * akq
                        a[k * n + q] = s * akp + c * akq
                    }
                    for k in 0..<n {
                        let apk = a[p * n + k], aqk = a[q * n + k]
                        a[p * n + k] = c * apk - s * aqk
                        a[q * n + k] = s * apk + c * aqk
                    }
                    a[p * n + q] = 0
                    a[q * n + p] = 0
                    for k in 0..<n {
                        let vkp = v[k * n + p], vkq = v[k * n + q]
                        v[k * n + p] = c * vkp - s * vkq
                        v[k * n + q] = s * vkp + c * vkq
                    }
                }
            }
        }
        return ((0..<n).map { a[$0 * n + $0] }, v)
    }

    /// aᵖ for a symmetric positive-semidefinite `a`: V·diag(max(λ, floor)ᵖ)·Vᵀ from
    /// `symmetricEigen`. Eigenvalues below `floor` (round-off can make them small or negative)
    /// are raised to it.
    static func symmetricPower(_ a: [Double], n: Int, exponent: Double, floor: Double) -> [Double] {
        let (values, v) = symmetricEigen(a, n: n)
        let powered = values.map { Foundation.pow(Swift.max($0, floor), exponent) }
        var out = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in i..<n {
                var s = 0.0
                for k in 0..<n { s += v[i * n + k] * powered[k] * v[j * n + k] }
                out[i * n + j] = s
                out[j * n + i] = s
            }
        }
        return out
    }
}
