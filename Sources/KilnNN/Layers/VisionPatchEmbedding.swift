import KilnCore

/// The input stage of a Vision Transformer (Dosovitskiy et al. 2021, eq. 1):
/// `z_0 = [x_class; x_p^1·E; …; x_p^N·E] + E_pos`.
///
/// The image is cut into non-overlapping `P_h × P_w` patches, each flattened (channel-major: `c`,
/// then the patch row, then the column) and projected linearly to `embedDim`: a `Conv2d` with
/// kernel = stride = patch size, as torchvision's `conv_proj` and timm's `patch_embed.proj`. The
/// `N = (H/P_h)·(W/P_w)` patch tokens are taken in row-major grid order, a learned class token is
/// prepended (unless `classToken: false`), and a learned position embedding of `N (+ 1)` rows is
/// added.
///
/// Shapes: input `[batch, C, H, W]` with `[H, W] = imageSize`, output `[batch, N + 1, embedDim]`
/// (`[batch, N, embedDim]` without a class token). Parameters, with torchvision's names:
/// `conv_proj.weight` `[embedDim, C, P_h, P_w]` and `conv_proj.bias` `[embedDim]` (`Conv2d`'s PyTorch
/// default initialisation from `seed`), `class_token` `[1, 1, embedDim]` (zeros, as torchvision) and
/// `pos_embedding` `[1, N (+ 1), embedDim]` (`N(0, 0.02²)`, as torchvision).
public final class VisionPatchEmbedding: Module {
    public var isTraining = true
    public let imageSize: [Int]
    public let patchSize: [Int]
    public let embedDim: Int
    /// `(H/P_h)·(W/P_w)`.
    public let patchCount: Int
    /// The linear projection of the flattened patches.
    public let projection: Conv2d
    /// `[1, 1, embedDim]`, or nil without a class token.
    public let classToken: Parameter?
    /// `[1, patchCount (+ 1), embedDim]`.
    public let positionEmbedding: Parameter

    /// - Parameters:
    ///   - imageSize: `[H, W]` (one value for a square image).
    ///   - patchSize: `[P_h, P_w]` (one value for square patches, 16 in ViT-B/16); must divide `imageSize`.
    /// - Throws: `TensorError` naming `VisionPatchEmbedding` for sizes < 1 or a patch size that does not
    ///   divide the image size.
    public init(imageSize: SpatialSize, patchSize: SpatialSize, inputChannels: Int, embedDim: Int,
                classToken: Bool = true, seed: UInt64, on backend: any Backend) throws {
        let op = "VisionPatchEmbedding"
        let image = try imageSize.expanded(to: 2, op: op, name: "imageSize", minimum: 1)
        let patch = try patchSize.expanded(to: 2, op: op, name: "patchSize", minimum: 1)
        try requirePositive(["inputChannels": inputChannels, "embedDim": embedDim], layer: op)
        guard image[0] % patch[0] == 0, image[1] % patch[1] == 0 else {
            throw TensorError(.invalidArgument, op: op, "patchSize \(patch) must divide imageSize \(image)")
        }
        self.imageSize = image
        self.patchSize = patch
        self.embedDim = embedDim
        patchCount = (image[0] / patch[0]) * (image[1] / patch[1])
        projection = try Conv2d(inputChannels: inputChannels, outputChannels: embedDim, kernelSize: SpatialSize(patch),
                                stride: SpatialSize(patch), seed: Initializer.derivedSeed(seed, stream: 0), on: backend)
        self.classToken = classToken ? Parameter(try Tensor.zeros([1, 1, embedDim], on: backend)) : nil
        positionEmbedding = Parameter(try Tensor.normal([1, patchCount + (classToken ? 1 : 0), embedDim],
                                                        standardDeviation: 0.02,
                                                        seed: Initializer.derivedSeed(seed, stream: 1), on: backend))
    }

    public var ownParameters: [(name: String, parameter: Parameter)] {
        (classToken.map { [("class_token", $0)] } ?? []) + [("pos_embedding", positionEmbedding)]
    }

    public var children: [(name: String, module: any Module)] { [("conv_proj", projection)] }

    /// The token sequence of a batch of images.
    /// - Throws: `TensorError` naming `VisionPatchEmbedding` for an input other than
    ///   `[batch, C, H, W]` with `[H, W] = imageSize`.
    public func callAsFunction(_ input: Tensor) throws -> Tensor {
        guard input.rank == 4, Array(input.shape.suffix(2)) == imageSize else {
            throw TensorError(.shapeMismatch, op: "VisionPatchEmbedding",
                              "expects input [batch, channels, \(imageSize[0]), \(imageSize[1])], got \(input.shape)")
        }
        let b = input.shape[0]
        let grid = try projection(input)                                             // [B, E, H/P, W/P]
        var tokens = try grid.reshaped(to: [b, embedDim, patchCount]).permuted([0, 2, 1])  // [B, N, E]
        if let classToken {
            tokens = try Tensor.concatenated([classToken.value.expanded(to: [b, 1, embedDim]), tokens], axis: 1)
        }
        return try tokens + positionEmbedding.value
    }
}
