// A picture's size as its bitstream declares it, read without decoding (vp8.ts, h264.ts).

export interface PictureSize {
  /** what is shown (H.264's cropping applied) */
  width: number;
  height: number;
  /** what a decoder allocates a picture for: whole macroblocks of 16 × 16, nothing cropped */
  codedPixels: number;
}
