import Foundation
import Kiln

/// Float64 references for convolution and pooling, written as direct loops over the definitions
/// (never as im2col or GEMM), independent of both backends.
public enum ConvolutionOracle {
    /// The input row (or column) a tap reads: `o·stride − pad + k·dilation`.
    @inline(__always)
    static func tap(_ o: Int, _ k: Int, _ stride: Int, _ pad: Int, _ dilation: Int) -> Int {
        o * stride - pad + k * dilation
    }

    /// `y[n, co, oh, ow] = bias[co] + Σ_{cig, kh, kw} x[n, g·Cig + cig, ih, iw]·w[co, cig, kh, kw]` (zero padding).
    public static func conv2d(_ x: [Double], _ w: [Double], _ bias: [Double]?, _ d: Convolution2DDescriptor) -> [Double] {
        let (cig, cog) = (d.inputChannels / d.groups, d.outputChannels / d.groups)
        var y = [Double](repeating: 0, count: d.batch * d.outputChannels * d.outputHeight * d.outputWidth)
        for n in 0..<d.batch {
            for co in 0..<d.outputChannels {
                let g = co / cog
                for oh in 0..<d.outputHeight {
                    for ow in 0..<d.outputWidth {
                        var s = bias?[co] ?? 0
                        for c in 0..<cig {
                            let ci = g * cig + c
                            for kh in 0..<d.kernelHeight {
                                let ih = tap(oh, kh, d.strideHeight, d.padTop, d.dilationHeight)
                                if ih < 0 || ih >= d.inputHeight { continue }
                                for kw in 0..<d.kernelWidth {
                                    let iw = tap(ow, kw, d.strideWidth, d.padLeft, d.dilationWidth)
                                    if iw < 0 || iw >= d.inputWidth { continue }
                                    s += x[((n * d.inputChannels + ci) * d.inputHeight + ih) * d.inputWidth + iw]
                                        * w[((co * cig + c) * d.kernelHeight + kh) * d.kernelWidth + kw]
                                }
                            }
                        }
                        y[((n * d.outputChannels + co) * d.outputHeight + oh) * d.outputWidth + ow] = s
                    }
                }
            }
        }
        return y
    }

    /// The gradients of `Σ dy·conv2d(x, w)`: `dx` (scattered tap by tap) and `dw`.
    public static func conv2dBackward(_ dy: [Double], _ x: [Double], _ w: [Double],
                                      _ d: Convolution2DDescriptor) -> (input: [Double], weight: [Double]) {
        let (cig, cog) = (d.inputChannels / d.groups, d.outputChannels / d.groups)
        var dx = [Double](repeating: 0, count: x.count)
        var dw = [Double](repeating: 0, count: w.count)
        for n in 0..<d.batch {
            for co in 0..<d.outputChannels {
                let g = co / cog
                for oh in 0..<d.outputHeight {
                    for ow in 0..<d.outputWidth {
                        let gv = dy[((n * d.outputChannels + co) * d.outputHeight + oh) * d.outputWidth + ow]
                        for c in 0..<cig {
                            let ci = g * cig + c
                            for kh in 0..<d.kernelHeight {
                                let ih = tap(oh, kh, d.strideHeight, d.padTop, d.dilationHeight)
                                if ih < 0 || ih >= d.inputHeight { continue }
                                for kw in 0..<d.kernelWidth {
                                    let iw = tap(ow, kw, d.strideWidth, d.padLeft, d.dilationWidth)
                                    if iw < 0 || iw >= d.inputWidth { continue }
                                    let xi = ((n * d.inputChannels + ci) * d.inputHeight + ih) * d.inputWidth + iw
                                    let wi = ((co * cig + c) * d.kernelHeight + kh) * d.kernelWidth + kw
                                    dx[xi] += gv * w[wi]
                                    dw[wi] += gv * x[xi]
                                }
                            }
                        }
                    }
                }
            }
        }
        return (dx, dw)
    }

    /// Transposed convolution, as `conv_transpose2d`, by scattering each input element through the
    /// weight: `y[n, g·Cog + c, oh·s − p + kh·d, ow·s − p + kw·d] += x[n, ci, oh, ow]·w[ci, c, kh, kw]`.
    /// x is `[N, C_in, H, W]`, w `[C_in, C_out/groups, kH, kW]`, y `[N, C_out, OH, OW]`.
    public static func convTranspose2d(_ x: [Double], xShape: [Int], _ w: [Double], wShape: [Int], _ bias: [Double]?,
                                       stride: [Int], padding: [Int], dilation: [Int], groups: Int,
                                       outputSize: [Int]) -> [Double] {
        let (n, cin, h, wd) = (xShape[0], xShape[1], xShape[2], xShape[3])
        let (cog, kh, kw) = (wShape[1], wShape[2], wShape[3])
        let cout = cog * groups, cig = cin / groups
        let (oh, ow) = (outputSize[0], outputSize[1])
        var y = [Double](repeating: 0, count: n * cout * oh * ow)
        for b in 0..<n {
            for co in 0..<cout {
                for i in 0..<(oh * ow) { y[(b * cout + co) * oh * ow + i] = bias?[co] ?? 0 }
            }
            for ci in 0..<cin {
                let g = ci / cig
                for ih in 0..<h {
                    for iw in 0..<wd {
                        let xv = x[((b * cin + ci) * h + ih) * wd + iw]
                        for c in 0..<cog {
                            for a in 0..<kh {
                                let yh = tap(ih, a, stride[0], padding[0], dilation[0])
                                if yh < 0 || yh >= oh { continue }
                                for e in 0..<kw {
                                    let yw = tap(iw, e, stride[1], padding[1], dilation[1])
                                    if yw < 0 || yw >= ow { continue }
                                    y[((b * cout + g * cog + c) * oh + yh) * ow + yw] += xv * w[((ci * cog + c) * kh + a) * kw + e]
                                }
                            }
                        }
                    }
                }
            }
        }
        return y
    }

    /// The window of output `o` along one dimension: its taps inside `[0, n)` and the average's divisor
    /// factor (PyTorch's: the window clipped to `[−pad, n + pad)` with `includePad`, else the taps inside).
    static func window(_ o: Int, n: Int, out: Int, kernel: Int, stride: Int, pad: Int, dilation: Int, adaptive: Bool,
                       includePad: Bool) -> (taps: [Int], divisor: Int) {
        if adaptive {
            let start = Int((Double(o * n) / Double(out)).rounded(.down))
            let end = Int((Double((o + 1) * n) / Double(out)).rounded(.up))
            return (Array(start..<end), end - start)
        }
        let start = o * stride - pad
        let taps = (0..<kernel).map { start + $0 * dilation }.filter { $0 >= 0 && $0 < n }
        let paddedEnd = Swift.min(start + kernel, n + pad)
        return (taps, includePad ? paddedEnd - start : taps.count)
    }

    /// Max or average pooling of `[planes, H, W]`: the output and (max) the flat index of each maximum
    /// (the first tap, then any larger value or NaN, as PyTorch).
    public static func pool2d(_ x: [Double], _ d: Pooling2DDescriptor) -> (output: [Double], indices: [Double]) {
        let (h, w, oh, ow) = (d.inputHeight, d.inputWidth, d.outputHeight, d.outputWidth)
        var y = [Double](repeating: 0, count: d.planes * oh * ow)
        var idx = y
        for p in 0..<d.planes {
            for i in 0..<oh {
                let rows = window(i, n: h, out: oh, kernel: d.kernelHeight, stride: d.strideHeight, pad: d.padHeight,
                                  dilation: d.dilationHeight, adaptive: d.adaptive, includePad: d.countIncludePad)
                for j in 0..<ow {
                    let cols = window(j, n: w, out: ow, kernel: d.kernelWidth, stride: d.strideWidth, pad: d.padWidth,
                                      dilation: d.dilationWidth, adaptive: d.adaptive, includePad: d.countIncludePad)
                    let o = (p * oh + i) * ow + j
                    if d.mode == .max {
                        var best = -Double.infinity, at = -1
                        for r in rows.taps {
                            for c in cols.taps {
                                let v = x[(p * h + r) * w + c]
                                if at < 0 || v > best || v.isNaN { best = v; at = r * w + c }
                            }
                        }
                        y[o] = best
                        idx[o] = Double(at)
                    } else {
                        var s = 0.0
                        for r in rows.taps { for c in cols.taps { s += x[(p * h + r) * w + c] } }
                        y[o] = s / Double(rows.divisor * cols.divisor)
                    }
                }
            }
        }
        return (y, idx)
    }

    /// The input gradient of pooling: each output's gradient sent to its maximum (max) or spread over its
    /// window's taps divided by the divisor (average).
    public static func pool2dBackward(_ dy: [Double], indices: [Double], _ d: Pooling2DDescriptor) -> [Double] {
        let (h, w, oh, ow) = (d.inputHeight, d.inputWidth, d.outputHeight, d.outputWidth)
        var dx = [Double](repeating: 0, count: d.planes * h * w)
        for p in 0..<d.planes {
            for i in 0..<oh {
                let rows = window(i, n: h, out: oh, kernel: d.kernelHeight, stride: d.strideHeight, pad: d.padHeight,
                                  dilation: d.dilationHeight, adaptive: d.adaptive, includePad: d.countIncludePad)
                for j in 0..<ow {
                    let cols = window(j, n: w, out: ow, kernel: d.kernelWidth, stride: d.strideWidth, pad: d.padWidth,
                                      dilation: d.dilationWidth, adaptive: d.adaptive, includePad: d.countIncludePad)
                    let o = (p * oh + i) * ow + j
                    if d.mode == .max {
                        dx[p * h * w + Int(indices[o])] += dy[o]
                    } else {
                        for r in rows.taps {
                            for c in cols.taps { dx[(p * h + r) * w + c] += dy[o] / Double(rows.divisor * cols.divisor) }
                        }
                    }
                }
            }
        }
        return dx
    }

    /// The gradient of `L(v) = Σ_j weights_j·f(v)_j` with respect to v by central differences with step
    /// `h`, at the positions `at` (all when nil). Exact up to rounding for linear f.
    public static func finiteDifference(_ f: ([Double]) -> [Double], at v: [Double], weights: [Double], h: Double = 1e-3,
                                        positions: [Int]? = nil) -> [(Int, Double)] {
        (positions ?? Array(v.indices)).map { i in
            var plus = v, minus = v
            plus[i] += h
            minus[i] -= h
            let lp = zip(f(plus), weights).reduce(0) { $0 + $1.0 * $1.1 }
            let lm = zip(f(minus), weights).reduce(0) { $0 + $1.0 * $1.1 }
            return (i, (lp - lm) / (2 * h))
        }
    }
}
